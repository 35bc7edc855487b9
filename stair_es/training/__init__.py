"""Training: losses, the stage-aware trainer, presets and in-memory retrieval evaluation (torch)."""
