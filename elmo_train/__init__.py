"""elmo-train: pretrain, adapt and use ELMo-style bidirectional language models."""

__version__ = "0.1.0"
