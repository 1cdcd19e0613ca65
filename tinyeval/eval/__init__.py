"""Evaluation under lm-eval: the YAML tasks in `tasks/`, HF and vLLM backends, strict/lenient summaries."""
