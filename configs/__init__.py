"""Training configs: `common.py` holds every key with its default; one file per family."""
