"""Fine-tuning LTX-2 with flow matching: noise-level samplers (timesteps), the objective
(flow, objective), one class per strategy (strategies), batches (data) and transformer
inputs (forward), adapters (lora), optimizers (optim), resumable state (checkpoint) and the
loop (loop), with the model placed by placement (block swap, compile, FSDP: compile,
sharding) across processes (distributed); around a run: DVCLive written while it runs
(live), kept adapters (kept), TensorBoard / W&B (trackers) and starting from an existing
adapter (init_from).

Nothing is imported here: ``import aiprod_recipes.training.loop`` pulls in torch, peft,
quanto and accelerate, which a CLI command that does not train should not pay for.
"""
