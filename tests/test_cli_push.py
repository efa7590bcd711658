"""`aiprod-recipes push` refuses to start without a token, naming the variable."""

from __future__ import annotations

from aiprod_recipes.cli import main


def test_push_needs_a_token(monkeypatch, capsys) -> None:
    monkeypatch.delenv("MY_HF_TOKEN", raising=False)
    assert main(["push", "alice/lora", "--token-env", "MY_HF_TOKEN"]) == 1
    assert "MY_HF_TOKEN" in capsys.readouterr().err
