"""GSM8K perturbation: verified number-perturbed twins of benchmark items (`twins.perturb_rows`).

chain (read and re-execute `<<expr=value>>` annotations), prose (calculations written outside them), link
(where each number comes from), swaps (names and objects), twins (draw, rewrite, verify).
"""
