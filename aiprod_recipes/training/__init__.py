"""Fine-tuning LTX-2 with flow matching: noise-level samplers (timesteps), the objective
(flow, objective), transformer inputs (forward), adapters (lora, quant), optimizers (optim),
resumable state (checkpoint) and the loop (loop).

Nothing is imported here: ``import aiprod_recipes.training.loop`` pulls in torch, peft,
quanto and accelerate, which a CLI command that does not train should not pay for.
"""
