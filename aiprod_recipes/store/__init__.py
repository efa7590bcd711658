"""Storage: atomic outputs, safetensors shards with JSONL manifests, per-item reuse, and
per-process parts merged into the one-process output (``parts``)."""
