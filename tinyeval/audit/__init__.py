"""Contamination audits: corpus n-gram scan (config, index, scan, readers, engines, report) and model probes.

Kept import-free on purpose: `tinyeval --help` imports the commands module, and the scan's numpy/rapidfuzz
work loads only when a command runs.
"""
