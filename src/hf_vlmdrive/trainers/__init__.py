"""Training recipes: argument dataclasses plus the few Trainer helpers each family needs."""
