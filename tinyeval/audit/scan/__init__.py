"""The corpus scan: recipe -> n-gram index -> shard tasks over corpus readers -> engine -> verdicts -> reports.

Import-free, like its parent: the numpy / numba modules load only when a command runs.
"""
