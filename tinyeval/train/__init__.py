"""tinyeval's own trainers: one loop skeleton (`loop.py`), objectives (`grpo.py`, `sft.py`) and the recipes that
run them (`recipes.py`: `RECIPES`, `build`, `run`; `tinyeval train` and `train-and-eval` both call `run`).

config.py: the loop's, the adapter's and each objective's settings, and presets; rollout/: generation engines
(HF generate, vLLM) behind one interface; rewards.py / tasks.py: verifiable rewards from the shared graders;
loss.py: advantages and loss variants as small functions picked by name; types.py: the tensors passed between.
"""
