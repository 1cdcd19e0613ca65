"""tinyeval's own trainers: one loop skeleton (`loop.py`) and pluggable objectives (GRPO in `grpo.py`).

rollout.py: generation engines (HF generate, vLLM) behind one interface; rewards.py / tasks.py: verifiable
rewards from the shared graders; loss.py: advantages and loss variants as small functions picked by name.
"""
