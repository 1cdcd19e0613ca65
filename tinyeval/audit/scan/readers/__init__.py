"""Corpus readers, one module per format (being split out of jsonl.py)."""
