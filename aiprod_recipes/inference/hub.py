"""Share an adapter on the Hugging Face Hub: the adapter file, a model card and the
evaluation metrics, uploaded as one commit.

The upload folder is built locally first (``build_folder``), so what will be published can
be inspected (and tested) without the network. The token is read from an environment
variable, never from the spec.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from aiprod_recipes.names import ADAPTER_FILE, METRICS_FILE
from aiprod_recipes.training.lora import AdapterMeta, read_adapter

__all__ = ["build_folder", "model_card", "push"]

BASE_MODEL = "Lightricks/LTX-2"


def _metrics_rows(metrics: dict[str, Any]) -> list[str]:
    keys = ["loss_base", "loss_adapter", "improvement", "num_val_clips"]
    rows = ["| metric | value |", "|---|---|"]
    for key in keys + sorted(k for k in metrics if k.startswith("loss_") and k not in keys):
        if key in metrics:
            value = metrics[key]
            rows.append(f"| {key} | {'n/a' if value is None else f'{value:.6g}'} |")
    return rows


def model_card(meta: AdapterMeta, repo_id: str, trigger_word: str = "",
               metrics: dict[str, Any] | None = None, filename: str = ADAPTER_FILE) -> str:
    """README.md for the Hub: front matter, what the adapter is, how to load it."""
    name = repo_id.rsplit("/", 1)[-1]
    trigger = (f"Start prompts with the trigger word **`{trigger_word}`**."
               if trigger_word else "No trigger word: the adapter applies to any prompt.")
    lines = [
        "---",
        f"base_model: {BASE_MODEL}",
        "library_name: ltx-core",
        "pipeline_tag: text-to-video",
        "tags:", "- lora", "- ltx-2", "- text-to-video", "- audio-video", f"- {meta.strategy}",
    ]
    if trigger_word:
        lines.append(f"instance_prompt: {json.dumps(trigger_word)}")
    lines += [
        "---", "",
        f"# {name}", "",
        f"A LoRA adapter for LTX-2 ({meta.strategy.replace('_', '-')}), trained with "
        "aiprod-recipes.", "",
        "| | |", "|---|---|",
        f"| strategy | `{meta.strategy}` |",
        f"| rank / alpha | {meta.rank} / {meta.alpha:g} (alpha / rank is baked into "
        "`lora_B`: load at strength 1) |",
        f"| target modules | {', '.join(f'`{t}`' for t in meta.target_modules)} |",
        f"| base model fingerprint | `{meta.base_fingerprint}` |",
        f"| spec hash | `{meta.spec_hash}` |", "",
        "## Trigger word", "", trigger, "",
    ]
    if metrics:
        lines += ["## Held-out evaluation", "",
                  "Flow-matching loss on the validation clips at fixed noise levels and noise "
                  "(lower is better; `improvement` = base - adapter).", "",
                  *_metrics_rows(metrics), ""]
    lines += [
        "## Use", "",
        "**ComfyUI**: put `" + filename + "` in `ComfyUI/models/loras/` and load it with a "
        "*LoraLoaderModelOnly* node on the LTX-2 model, strength 1.0. The keys use ComfyUI's "
        "`diffusion_model.` layout.", "",
        "**ltx-core**: pass the file to the transformer's builder, which fuses it on load:", "",
        "```python",
        "from ltx_core.loader import LTXV_LORA_COMFY_RENAMING_MAP",
        f'builder = builder.lora("{filename}", strength=1.0, '
        "sd_ops=LTXV_LORA_COMFY_RENAMING_MAP)",
        "```", "",
        "**aiprod-recipes**:", "",
        "```",
        f'aiprod-recipes sample --prompt "{trigger_word + " " if trigger_word else ""}..." '
        f"--adapter {filename}:1.0 --out sample.mp4",
        "```", "",
        "The base-model fingerprint is the sha256 of the checkpoint's safetensors header and "
        "size; the adapter was trained on the checkpoint with that fingerprint.",
    ]
    return "\n".join(lines) + "\n"


def build_folder(adapter_dir: Path, dest: Path, repo_id: str, trigger_word: str = "",
                 metrics_path: Path | None = None) -> list[Path]:
    """Fill ``dest`` with what is uploaded: the adapter, README.md and (if given)
    metrics.json. Returns the files, sorted."""
    adapter = Path(adapter_dir) / ADAPTER_FILE
    if not adapter.is_file():
        raise FileNotFoundError(f"no {ADAPTER_FILE} in {adapter_dir}")
    _, meta = read_adapter(adapter)
    metrics = None
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(adapter, dest / ADAPTER_FILE)
    if metrics_path is not None:
        metrics = json.loads(Path(metrics_path).read_text(encoding="utf-8"))
        shutil.copyfile(metrics_path, dest / METRICS_FILE)
    (dest / "README.md").write_text(model_card(meta, repo_id, trigger_word, metrics),
                                    encoding="utf-8")
    return sorted(p for p in dest.iterdir() if p.is_file())


def push(adapter_dir: Path, repo_id: str, token_env: str = "HF_TOKEN", *,
         trigger_word: str = "", metrics_path: Path | None = None, private: bool = True,
         staging: Path | None = None) -> str:
    """Create (or reuse) the model repo and upload the folder as one commit; returns its URL."""
    import tempfile

    from huggingface_hub import HfApi

    token = os.environ.get(token_env)
    if not token:
        raise ValueError(f"set {token_env} to a Hugging Face token with write access")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(staging) if staging is not None else Path(tmp)
        build_folder(adapter_dir, folder, repo_id, trigger_word, metrics_path)
        api = HfApi(token=token)
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                                 commit_message="Upload LTX-2 LoRA adapter")
    return str(getattr(info, "commit_url", info))
