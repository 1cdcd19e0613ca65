"""Contamination audits, three concepts in three packages:

  scan/     the corpus n-gram scan (`tinyeval audit`): recipes, index, readers, shards, engines, verdicts, reports
  perturb/  verified number-perturbed GSM8K twins (`tinyeval perturb`)
  probes/   leakage probes on a model (`tinyeval audit --model`): accuracy on twins, prefix, membership

Kept import-free on purpose: `tinyeval --help` imports the commands module, and the scan's numpy/rapidfuzz
work loads only when a command runs.
"""
