"""Corpus readers, one module per format (jsonl, txt, parquet, hf) registered in `registry`; `streams` is
the block reader the line-based formats share, `arrow` JSONL's pyarrow path, `types` what readers exchange.

Bad input never stops a scan: a malformed JSON line, invalid UTF-8, a missing text field, an empty or
unreadable file and a truncated .gz/.zst are skipped and counted (`types.Stats`), and everything readable
before the damage is still scanned.
"""
