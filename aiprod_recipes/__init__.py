"""aiprod-recipes: declarative, DVC-tracked recipes for fine-tuning LTX-2 audio-video models.

The spec (``spec.py``) declares every parameter; the registry (``registry.py``) declares every
stage; ``runtime.py`` runs one stage at a time for ``dvc repro``.
"""
