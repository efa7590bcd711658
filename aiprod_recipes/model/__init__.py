"""LTX-2 through ltx-core: the tiny checkpoint, component loading, text and VAE encoding.

Modules (import them directly; this package imports nothing heavy at import time so that
``aiprod_recipes.model.tiny_config`` and friends stay cheap to reach):

- ``tiny``: ``build_tiny_model`` writes a deterministic tiny LTX-2 checkpoint + Gemma folder.
- ``runtime``: where the model lives for a spec, device and dtype, ``load_model``.
- ``header``: the checkpoint's header, config and fingerprint (no torch, no ltx-core).
- ``loader``: ``load_components`` (ltx-core builders, explicit device/dtype, ``LoadOptions``).
- ``streamed``: the transformer built block by block (quantized while loading, swapped
  blocks kept on the CPU); ``quant``: optimum-quanto quantization of the base linears.
- ``offload``: block swap; ``text8bit``: Gemma in 8 bit; ``errors``: settings this model
  or device cannot run.
- ``text``: captions -> stored Gemma features -> connector context for the transformer.
- ``vae``: frames/waveforms <-> video/audio latents.
- ``gemma_config``: applies a Gemma folder's config to ltx-core's module-global config.
"""
