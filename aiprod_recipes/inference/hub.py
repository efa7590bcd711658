"""Share trained weights on the Hugging Face Hub: the adapter (or the fully fine-tuned
transformer), a model card and the evaluation metrics, uploaded as one commit.

The upload folder is built locally first (``build_folder``), so what will be published can
be inspected (and tested) without the network. The token is read from an environment
variable, never from the spec. Any file the train stage writes can be pushed: the final
adapter, a kept checkpoint (uploaded under the adapter's usual name, so the repo id works
as ``lora.init_from``), or full weights. A failure on the way (offline, a refused token, a
missing repo, an unreachable endpoint) is one ``HubError`` line that says which.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from aiprod_recipes.names import ADAPTER_FILE, FULL_WEIGHTS_FILE, METRICS_FILE
from aiprod_recipes.training.lora import FULL_FORMAT, AdapterMeta, read_adapter, weights_format

__all__ = ["HubError", "build_folder", "explain", "full_model_card", "model_card", "push",
           "trained_file"]


class HubError(RuntimeError):
    """The Hub could not be reached or refused the request; the message is one line."""

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


def full_model_card(repo_id: str, trigger_word: str = "",
                    metrics: dict[str, Any] | None = None,
                    filename: str = FULL_WEIGHTS_FILE) -> str:
    """README.md for fully fine-tuned transformer weights."""
    name = repo_id.rsplit("/", 1)[-1]
    trigger = (f"Start prompts with the trigger word **`{trigger_word}`**."
               if trigger_word else "No trigger word.")
    lines = ["---", f"base_model: {BASE_MODEL}", "library_name: ltx-core",
             "pipeline_tag: text-to-video", "tags:", "- ltx-2", "- text-to-video",
             "- audio-video", "- full-fine-tune", "---", "",
             f"# {name}", "",
             "A fully fine-tuned LTX-2 transformer, trained with aiprod-recipes. The file "
             "holds the transformer's weights under `model.diffusion_model.` with the base "
             "checkpoint's `config` in its header; the VAEs, vocoder and text encoder are "
             "the base model's.", "",
             "## Trigger word", "", trigger, ""]
    if metrics:
        lines += ["## Held-out evaluation", "", "Flow-matching loss on the validation clips "
                  "(lower is better; `improvement` = base - fine-tuned).", "",
                  *_metrics_rows(metrics), ""]
    lines += ["## Use", "", "**aiprod-recipes**:", "", "```",
              f'aiprod-recipes sample --prompt "..." --transformer {filename} --out sample.mp4',
              "```", "",
              "**ltx-core**: build the transformer from this file with "
              "`SingleGPUModelBuilder(model_path=\"" + filename + "\", "
              "model_class_configurator=LTXModelConfigurator, "
              "model_sd_ops=LTXV_MODEL_COMFY_RENAMING_MAP)`."]
    return "\n".join(lines) + "\n"


def trained_file(weights: Path) -> Path:
    """A train output folder -> its adapter (or full weights); a file is itself."""
    weights = Path(weights)
    if weights.is_dir():
        for name in (ADAPTER_FILE, FULL_WEIGHTS_FILE):
            if (weights / name).is_file():
                return weights / name
        raise FileNotFoundError(f"no {ADAPTER_FILE} or {FULL_WEIGHTS_FILE} in {weights}")
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: no such file")
    return weights


def build_folder(weights: Path, dest: Path, repo_id: str, trigger_word: str = "",
                 metrics_path: Path | None = None) -> list[Path]:
    """Fill ``dest`` with what is uploaded: the adapter or full weights (``weights``: a file
    or a train output folder), README.md and (if given) metrics.json. Returns the files,
    sorted."""
    source = trained_file(weights)
    metrics = None
    if metrics_path is not None:
        metrics = json.loads(Path(metrics_path).read_text(encoding="utf-8"))
    if weights_format(source) == FULL_FORMAT:
        name, card = FULL_WEIGHTS_FILE, full_model_card(repo_id, trigger_word, metrics)
    else:
        name = ADAPTER_FILE
        card = model_card(read_adapter(source)[1], repo_id, trigger_word, metrics)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest / name)
    if metrics_path is not None:
        shutil.copyfile(metrics_path, dest / METRICS_FILE)
    (dest / "README.md").write_text(card, encoding="utf-8")
    return sorted(p for p in dest.iterdir() if p.is_file())


def _network_errors() -> tuple[type[BaseException], ...]:
    """What the Hub client raises for the network: requests' errors and the offline switch
    are OSErrors; huggingface_hub 1.x speaks httpx."""
    errors: list[type[BaseException]] = [OSError]
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:
        pass
    return tuple(errors)


def explain(error: BaseException, endpoint: str, repo_id: str, token_env: str) -> str:
    """One line that says why a Hub call failed: offline, the token, the repo, the network."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(error, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set: pushing needs the network (unset HF_HUB_OFFLINE)"
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(error, HfHubHTTPError) or status is not None:
        if status in (401, 403):
            return (f"{endpoint} refused the token in {token_env} ({status}): it needs write "
                    f"access to {repo_id}")
        if status == 404:
            return f"{repo_id} was not found on {endpoint} (404): check the namespace"
        message = str(getattr(error, "server_message", None) or error).splitlines()[0]
        return f"{endpoint} answered {status}: {message}"
    cause = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"cannot reach {endpoint} (offline or unreachable): {type(error).__name__}: {cause}"


def push(weights: Path, repo_id: str, token_env: str = "HF_TOKEN", *,
         trigger_word: str = "", metrics_path: Path | None = None, private: bool = True,
         staging: Path | None = None, endpoint: str | None = None) -> str:
    """Create (or reuse) the model repo and upload the folder as one commit; returns its URL.

    ``endpoint``: the Hub's URL (default: ``HF_ENDPOINT`` when set, else huggingface.co).
    Raises ``HubError`` (one line) when the Hub cannot be reached or refuses.
    """
    import tempfile

    from huggingface_hub import HfApi

    token = os.environ.get(token_env)
    if not token:
        raise ValueError(f"set {token_env} to a Hugging Face token with write access")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(staging) if staging is not None else Path(tmp)
        files = build_folder(weights, folder, repo_id, trigger_word, metrics_path)
        api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token)
        what = "full weights" if any(p.name == FULL_WEIGHTS_FILE for p in files) else "adapter"
        try:
            api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, folder_path=str(folder),
                                     repo_type="model",
                                     commit_message=f"Upload LTX-2 {what}")
        except _network_errors() as e:
            raise HubError(explain(e, api.endpoint, repo_id, token_env)) from e
    return str(getattr(info, "commit_url", info))
