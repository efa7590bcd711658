"""Sampling from the base model plus adapters, the held-out loss, the evaluation report and
the ``aiprod-recipes sample`` command.

Modules: ``guidance`` (CFG + STG through ltx-core's guider and perturbations), ``sampler``
(seeded flow-matching Euler sampling and decoding to an mp4 with sound), ``adapters``
(attach, fuse, toggle LoRA files), ``prompts`` (text to Gemma features), ``metrics`` (the
held-out flow-matching loss), ``report`` (metrics.json and report.md), ``html_report``
(report.html: the same with training curves and playable samples, one file), ``samples``
(evaluate's samples: jobs, requests with the eval seeds, rendering), ``periodic`` (those
samples and the held-out loss every ``eval.every_steps`` training steps, into DVCLive),
``merge`` (adapters folded into a single-file checkpoint), ``cli`` (the ``sample``
subcommand) and ``hub`` (a model card and a Hugging Face upload, one-line errors).
"""
