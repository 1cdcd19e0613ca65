"""Reports of a train-and-eval run: results schema, tables, Markdown, plots, CI gate."""
