"""Trainer helpers: `<x>_config.py` (TrainingArguments subclasses) + `<x>_trainer.py` pairs where Trainer needs help."""
