"""DanceGRPO, done right: GRPO fine-tuning of image and video generators against reward models."""

__version__ = "0.1.0"
