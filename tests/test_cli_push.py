"""`aiprod-recipes push` through the real Hugging Face client against a Hub on 127.0.0.1:
the files that arrive, and one-line errors with exit 1 when offline, refused, not found or
unreachable."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiprod_recipes.cli import main
from aiprod_recipes.names import ADAPTER_FILE
from tests.conftest import BIN, free_port, run_cmd, write_spec
from tests.fake_hub import MISSING_NAMESPACE, TOKEN, fake_hub
from tests.test_inference_hub import adapter_dir


def test_push_needs_a_token(monkeypatch, capsys) -> None:
    monkeypatch.delenv("MY_HF_TOKEN", raising=False)
    assert main(["push", "alice/lora", "--token-env", "MY_HF_TOKEN"]) == 1
    assert "MY_HF_TOKEN" in capsys.readouterr().err


def push(project: Path, repo: str, weights: Path | None, endpoint: str,
         token: str = TOKEN, offline: bool = False):
    """The CLI in its own process, as a user runs it (the Hub client reads its
    environment when it is imported)."""
    args = [str(BIN / "aiprod-recipes"), "push", repo]
    if weights is not None:
        args += ["--weights", str(weights)]
    return run_cmd(args, project, check=False,
                   env={"HF_ENDPOINT": endpoint, "HF_TOKEN": token,
                        "HF_HUB_OFFLINE": "1" if offline else "0"})


def test_push_uploads_the_adapter_and_its_card(tmp_path: Path) -> None:
    write_spec(tmp_path)
    weights = adapter_dir(tmp_path) / ADAPTER_FILE
    with fake_hub() as hub:
        proc = push(tmp_path, "alice/style", weights, hub.url)
    assert proc.returncode == 0, proc.stderr
    assert f"pushed to {hub.url}/alice/style/commit/" in proc.stdout
    repo = hub.repos["alice/style"]
    assert repo["private"] is True and repo["commits"] == ["Upload LTX-2 adapter"]
    assert sorted(repo["files"]) == ["README.md", ADAPTER_FILE]
    assert repo["files"][ADAPTER_FILE] == weights.read_bytes()
    assert b"trigger word **`aiprod`**" in repo["files"]["README.md"]


@pytest.mark.parametrize("case, expected", [
    pytest.param("offline", "HF_HUB_OFFLINE is set", marks=pytest.mark.slow),
    ("unreachable", "cannot reach http://127.0.0.1:"),
    ("token", "refused the token in HF_TOKEN (401)"),
    pytest.param("missing", f"{MISSING_NAMESPACE}/style was not found", marks=pytest.mark.slow),
])
def test_push_errors_are_one_line(tmp_path: Path, case: str, expected: str) -> None:
    write_spec(tmp_path)
    weights = adapter_dir(tmp_path) / ADAPTER_FILE
    with fake_hub() as hub:
        endpoint = f"http://127.0.0.1:{free_port()}" if case == "unreachable" else hub.url
        proc = push(tmp_path, f"{MISSING_NAMESPACE if case == 'missing' else 'alice'}/style",
                    weights, endpoint, token="wrong" if case == "token" else TOKEN,
                    offline=case == "offline")
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
