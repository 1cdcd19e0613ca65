"""tinyeval: train and compare tiny adapters, evaluate under lm-eval, audit benchmarks for contamination."""

__version__ = "0.1.0"
