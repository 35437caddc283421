"""The biLM in pure torch: no Lightning, Hydra or file I/O here."""
