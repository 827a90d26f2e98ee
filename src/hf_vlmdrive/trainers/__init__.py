"""Training helpers: `<x>_config.py` + `<x>_trainer.py` pairs where `Trainer` / `SFTTrainer` need help."""
