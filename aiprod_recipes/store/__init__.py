"""Storage: atomic outputs, safetensors shards with JSONL manifests, per-item reuse."""
