"""Leakage probes on a model (`run.run_probes`): accuracy on twins, prefix completion, membership scores.

Import-free: torch and the model stack load only when probes run.
"""
