"""Rollout engines behind one interface (`types.RolloutEngine`): sample completions, hear about each update.

hf.py: HF `generate` on the trainer's own model (sync ships 0 bytes); vllm.py: a vLLM engine sent the adapter
as a rank-r LoRA each step, applied as a `LoRARequest` or merged in its worker (vllm_merge.py); tokens.py: the
padding and EOS bookkeeping both share; engines.py: `make_engine`, the choice between them.
"""
