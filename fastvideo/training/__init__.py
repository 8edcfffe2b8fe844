"""Training utilities shared by the one GRPO trainer: optimizer, EMA, LoRA, metrics, checkpoints."""
