"""The runtime's promises: atomic outputs and a clear failure for an unknown stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiprod_recipes.cli import main
from aiprod_recipes.store.atomic import atomic_dir, atomic_write_bytes


def test_failed_stage_leaves_previous_output(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("killed")
    assert (final / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_killed_run_leftovers_are_cleaned(tmp_path: Path) -> None:
    final = tmp_path / "out"
    (tmp_path / ".out.tmp-999").mkdir()
    (tmp_path / ".out.tmp-999" / "partial").write_text("x")
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_write_bytes(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "d" / "f.bin", b"abc")
    assert (tmp_path / "d" / "f.bin").read_bytes() == b"abc"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["f.bin"]


def test_unknown_stage(capsys) -> None:
    assert main(["run", "no-such-stage"]) == 2
    assert "unknown stage" in capsys.readouterr().err


def test_stale_dvc_yaml_stops_a_stage(project, capsys) -> None:
    from aiprod_recipes import render
    from aiprod_recipes.specio import load_spec
    from tests.conftest import write_spec

    write_spec(project, data={"raw_dir": "raw"})
    render.write(load_spec("params.toml"))
    write_spec(project, data={"raw_dir": "elsewhere"})
    assert main(["run", "ingest"]) == 1
    assert "aiprod-recipes render" in capsys.readouterr().err


def test_validate_checks_the_whole_dvc_yaml(project, capsys) -> None:
    """A switch that changes another stage's entry (train's params with eval.every_steps)
    stops validate, the first stage DVC runs, before DVC removes any output."""
    from aiprod_recipes import render
    from aiprod_recipes.specio import load_spec
    from tests.conftest import write_spec

    write_spec(project, data={"raw_dir": "raw"})
    render.write(load_spec("params.toml"))
    write_spec(project, data={"raw_dir": "raw"}, eval={"every_steps": 5})
    assert main(["run", "validate"]) == 1
    assert "aiprod-recipes render" in capsys.readouterr().err


def test_remembered_file_hash_follows_changes(tmp_path: Path) -> None:
    import hashlib
    import os

    from aiprod_recipes.provenance import sha256_file

    path = tmp_path / "clip.bin"
    path.write_bytes(b"first")
    assert sha256_file(path) == hashlib.sha256(b"first").hexdigest()
    path.write_bytes(b"second!")
    os.utime(path, ns=(1, 1))
    assert sha256_file(path) == hashlib.sha256(b"second!").hexdigest()


def test_console_exit_keeps_code_output_and_exit_handlers(tmp_path: Path) -> None:
    """The console script ends without tearing the interpreter down: the exit code, all
    that was printed (to a pipe, so block-buffered) and the exit handlers survive it."""
    import json
    import subprocess
    import sys

    marker = tmp_path / "handler-ran"

    def console(*argv: str) -> subprocess.CompletedProcess[str]:
        code = ("import atexit, pathlib, sys; from aiprod_recipes import cli; "
                f"atexit.register(pathlib.Path({str(marker)!r}).touch); "
                f"sys.argv = ['aiprod-recipes', *{list(argv)!r}]; cli.entry()")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=tmp_path, check=False)

    failed = console("run", "ingest")
    assert failed.returncode == 2
    assert "params.toml: file not found" in failed.stderr
    assert marker.exists()
    marker.unlink()
    schema = console("schema")
    assert schema.returncode == 0 and marker.exists()
    assert "lora" in json.loads(schema.stdout)["$defs"]["Spec"]["properties"]
