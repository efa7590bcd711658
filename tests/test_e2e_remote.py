"""Sharing the pipeline through DVC remotes: a local folder and a real SSH server.

- push, then pull into a fresh ``git clone``: clean status, ``dvc repro`` does nothing;
- ``dvc repro --pull --allow-missing`` after a split change fetches only what the affected
  stages read: no raw clips, no ingest shards;
- a corrupted object in the remote: what DVC does with it, and how it is caught;
- an SSH remote served by a throw-away sshd on 127.0.0.1, the key in .dvc/config.local;
- an S3 remote on moto's S3-compatible server on 127.0.0.1: the endpoint committed, the
  credentials in .dvc/config.local, ``verify = true`` catching a damaged object.
"""

from __future__ import annotations

import getpass
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiprod_recipes.names import STAGES_DIR
from tests.conftest import free_port, git_commit, run_cmd
from tests.e2e_fixtures import (
    RAW_DIR,
    cache_objects,
    changed_inputs,
    downstream,
    dvc,
    project_spec,
    project_stages,
    ran_stages,
    read_lock,
    readers,
    set_param,
    tracked_file_md5s,
)

SSHD = Path("/usr/sbin/sshd")
PORT_POLLS = 100
POLL_S = 0.1


def _add_local_remote(project: Path, store: Path) -> None:
    run_cmd(dvc("remote", "add", "-d", "local", str(store)), project)
    git_commit(project, "local remote")


def _clone(project: Path, dest: Path) -> Path:
    run_cmd(["git", "clone", "-q", str(project), str(dest)], project.parent)
    return dest


def _status(root: Path, env: dict | None = None) -> dict:
    return json.loads(run_cmd(dvc("status", "--json"), root, env=env).stdout or "{}")


def _remote_object(store: Path, md5: str) -> Path:
    return store / "files" / "md5" / md5[:2] / md5[2:]


def _check_clean_clone(clone: Path, env: dict | None = None) -> None:
    assert _status(clone, env) == {}
    proc = run_cmd(dvc("repro"), clone, env=env)
    log = proc.stdout + proc.stderr
    assert not ran_stages(log)
    assert "Data and pipelines are up to date" in log
    for stage in project_stages(clone):
        assert f"Stage '{stage.name}' didn't change, skipping" in log


# --------------------------------------------------------------------------- local remote

def test_push_then_pull_in_a_fresh_clone(project_copy: Path, tmp_path: Path) -> None:
    _add_local_remote(project_copy, tmp_path / "store")
    run_cmd(dvc("push", "-q"), project_copy)
    clone = _clone(project_copy, tmp_path / "clone")
    run_cmd(dvc("pull", "-q"), clone)
    for out in read_lock(project_copy).values():
        for o in out.get("outs", []):
            assert (clone / o["path"]).exists(), o["path"]
    _check_clean_clone(clone)


@pytest.mark.slow
@pytest.mark.parametrize("change", [("split", "split.seed", 5), ("lora", "lora.rank", 4)],
                         ids=["split", "lora"])
def test_repro_pull_allow_missing_fetches_only_what_it_needs(
        built_project: Path, tmp_path: Path, change: tuple[str, str, object]) -> None:
    """After a split or rank change, a fresh clone reruns only what reads it (and what
    follows) and downloads neither the raw clips nor the ingest shards (split reads only
    the ingest manifest; train and evaluate read latents and text features)."""
    section, key, value = change
    store = tmp_path / "store"
    _add_local_remote(built_project, store)
    run_cmd(dvc("push", "-q"), built_project)
    raw = set(tracked_file_md5s(built_project, RAW_DIR).values())
    ingest = tracked_file_md5s(built_project, (STAGES_DIR / "ingest").as_posix())
    shards = {md5 for name, md5 in ingest.items() if name.endswith(".safetensors")}
    assert raw and shards

    clone = _clone(built_project, tmp_path / "clone")
    set_param(clone, key, value)
    before = read_lock(clone)
    proc = run_cmd(dvc("repro", "--pull", "--allow-missing"), clone)
    ran = ran_stages(proc.stdout + proc.stderr)

    spec, stages = project_spec(clone), project_stages(clone)
    direct = readers(stages, key)
    after = read_lock(clone)
    moved = {s.name for s in stages if changed_inputs(before, after, s.name)}
    assert direct <= ran
    assert ran == direct | (moved & downstream(direct, spec, stages))
    assert not (clone / RAW_DIR).exists()
    cached = cache_objects(clone)
    assert not raw & cached, "raw clips were downloaded"
    assert not shards & cached, "ingest shards were downloaded"
    if section == "lora":
        assert ran == {"validate", "train", "evaluate"}
    else:
        assert ingest["manifest.jsonl"] in cached


# --------------------------------------------------------------------------- corruption

def _corrupt_one_clip(project: Path, store: Path) -> tuple[str, str]:
    """Overwrite a few bytes of one raw clip's object in the remote: (file name, md5)."""
    name, md5 = sorted(tracked_file_md5s(project, RAW_DIR).items())[0]
    obj = _remote_object(store, md5)
    obj.chmod(0o644)
    with open(obj, "r+b") as f:
        f.seek(64)
        f.write(b"\xde\xad\xbe\xef")
    return name, md5


def test_corrupted_remote_object(locked_project: Path, tmp_path: Path) -> None:
    """By default DVC does not verify what it downloads: the bad bytes reach the cache and
    the workspace under the good hash, pull exits 0, and status stays clean until the file
    is hashed again (here: its mtime moves), when status reports the folder modified.
    With ``verify = true`` on the remote, pull hashes what it downloads, drops the bad
    object and exits non-zero naming the output it could not check out."""
    store = tmp_path / "store"
    _add_local_remote(locked_project, store)
    run_cmd(dvc("push", "-q"), locked_project)
    name, md5 = _corrupt_one_clip(locked_project, store)
    good = (locked_project / RAW_DIR / name).read_bytes()

    trusting = _clone(locked_project, tmp_path / "trusting")
    run_cmd(dvc("pull", "-q"), trusting)
    pulled = trusting / RAW_DIR / name
    assert pulled.read_bytes() == _remote_object(store, md5).read_bytes() != good
    assert _status(trusting) == {}
    stat = pulled.stat()
    os.utime(pulled, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert {"changed outs": {RAW_DIR: "modified"}} in _status(trusting)[f"{RAW_DIR}.dvc"]

    verifying = _clone(locked_project, tmp_path / "verifying")
    (verifying / ".dvc" / "config.local").write_text('[remote "local"]\n    verify = true\n')
    proc = run_cmd(dvc("pull"), verifying, check=False)
    assert proc.returncode != 0
    assert "Checkout failed" in proc.stderr
    assert RAW_DIR in proc.stderr
    assert md5 not in cache_objects(verifying)
    assert not (verifying / RAW_DIR / name).exists()


# --------------------------------------------------------------------------- ssh remote

def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(POLL_S)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f",
                    str(path)], check=True, capture_output=True)


SSHD_CONFIG = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {dir}/host_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
AllowUsers {user}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
LogLevel ERROR
"""


class SshServer:
    def __init__(self, port: int, user: str, keyfile: Path, home: Path) -> None:
        self.port, self.user, self.keyfile, self.home = port, user, keyfile, home

    @property
    def env(self) -> dict[str, str]:
        """An empty HOME and no agent: only the keyfile from config.local can log in."""
        return {"HOME": str(self.home), "SSH_AUTH_SOCK": ""}

    def url(self, path: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"


def _privsep_dir_ready() -> bool:
    """sshd (as root) needs its privilege separation folder; create it when missing."""
    privsep = Path("/run/sshd")
    if privsep.is_dir() or os.geteuid() != 0:
        return True
    try:
        privsep.mkdir(mode=0o755, parents=True)
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """sshd on 127.0.0.1 and a free port, key-only login for the current user."""
    if not SSHD.is_file() or shutil.which("ssh-keygen") is None:
        pytest.skip(f"{SSHD} or ssh-keygen missing (apt-get install openssh-server)")
    if not _privsep_dir_ready():
        pytest.skip("sshd needs /run/sshd (mkdir -p /run/sshd)")
    d = tmp_path_factory.mktemp("sshd")
    _keygen(d / "host_key")
    _keygen(d / "client_key")
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    port, user = free_port(), getpass.getuser()
    (d / "sshd_config").write_text(SSHD_CONFIG.format(port=port, dir=d, user=user))
    home = d / "home"
    home.mkdir()
    log = open(d / "sshd.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(PORT_POLLS):
            if proc.poll() is not None or _port_open(port):
                break
            time.sleep(POLL_S)
        if proc.poll() is not None or not _port_open(port):
            raise RuntimeError(f"sshd did not start: {(d / 'sshd.log').read_text()}")
        yield SshServer(port, user, d / "client_key", home)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def test_ssh_remote_push_then_pull(locked_project: Path, ssh_server: SshServer,
                                   tmp_path: Path) -> None:
    store = tmp_path / "ssh-store"
    env = ssh_server.env
    run_cmd(dvc("remote", "add", "-d", "ssh", ssh_server.url(store)), locked_project, env=env)
    run_cmd(dvc("remote", "modify", "--local", "ssh", "keyfile", str(ssh_server.keyfile)),
            locked_project, env=env)
    git_commit(locked_project, "ssh remote")
    assert "keyfile" not in (locked_project / ".dvc" / "config").read_text()
    run_cmd(dvc("push", "-q"), locked_project, env=env)
    pushed = {p.parent.name + p.name for p in (store / "files" / "md5").glob("*/*")}
    assert set(tracked_file_md5s(locked_project, RAW_DIR).values()) <= pushed

    clone = _clone(locked_project, tmp_path / "clone")
    assert not (clone / ".dvc" / "config.local").exists()
    run_cmd(dvc("remote", "modify", "--local", "ssh", "keyfile", str(ssh_server.keyfile)),
            clone, env=env)
    run_cmd(dvc("pull", "-q"), clone, env=env)
    assert (clone / RAW_DIR).is_dir()
    assert _status(clone, env) == {}


# --------------------------------------------------------------------------- s3 remote

S3_INSTALL = "pip install 'moto[server]' 'dvc-s3>=3' (both in the dev extra)"
S3_CREDENTIALS = {"access_key_id": "aiprod-test", "secret_access_key": "aiprod-test-secret"}


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def client(self):  # boto3 clients have no importable type
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=S3_CREDENTIALS["access_key_id"],
                            aws_secret_access_key=S3_CREDENTIALS["secret_access_key"])


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    """moto's S3-compatible server on 127.0.0.1 and a free port, in a thread."""
    if importlib.util.find_spec("dvc_s3") is None:
        pytest.skip(f"dvc-s3 is not installed: {S3_INSTALL}")
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        pytest.skip(f"moto's server mode is not installed: {S3_INSTALL}")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3_url(s3_server: S3Server, request: pytest.FixtureRequest, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket for the test; the user's own AWS settings cannot leak in."""
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    empty = tmp_path / "aws-config"
    empty.touch()
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    bucket = ("aiprod-" + request.node.name.replace("_", "-").lower())[:60].rstrip("-")
    s3_server.client().create_bucket(Bucket=bucket)
    return f"s3://{bucket}/store"


def _s3_credentials(root: Path) -> None:
    for key, value in S3_CREDENTIALS.items():
        run_cmd(dvc("remote", "modify", "--local", "s3", key, value), root)


def _add_s3_remote(project: Path, url: str, endpoint: str, *, verify: bool = False) -> None:
    """The URL and endpoint in .dvc/config (committed), the keys in .dvc/config.local."""
    run_cmd(dvc("remote", "add", "-d", "s3", url), project)
    run_cmd(dvc("remote", "modify", "s3", "endpointurl", endpoint), project)
    if verify:
        run_cmd(dvc("remote", "modify", "s3", "verify", "true"), project)
    _s3_credentials(project)
    git_commit(project, "s3 remote")
    shared = (project / ".dvc" / "config").read_text()
    assert endpoint in shared and S3_CREDENTIALS["secret_access_key"] not in shared


def _s3_keys(server: S3Server, url: str) -> set[str]:
    """The md5s of the objects under the remote's prefix."""
    bucket, prefix = url.removeprefix("s3://").split("/", 1)
    pages = server.client().get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{prefix}/files/md5/")
    return {"".join(o["Key"].split("/")[-2:]) for page in pages
            for o in page.get("Contents", [])}


@pytest.mark.slow
def test_s3_remote_push_then_pull(locked_project: Path, s3_server: S3Server, s3_url: str,
                                  tmp_path: Path) -> None:
    _add_s3_remote(locked_project, s3_url, s3_server.endpoint)
    run_cmd(dvc("push", "-q"), locked_project)
    assert set(tracked_file_md5s(locked_project, RAW_DIR).values()) <= _s3_keys(s3_server,
                                                                               s3_url)

    clone = _clone(locked_project, tmp_path / "clone")
    assert not (clone / ".dvc" / "config.local").exists()
    _s3_credentials(clone)
    run_cmd(dvc("pull", "-q"), clone)
    for out in read_lock(locked_project).values():
        for o in out.get("outs", []):
            assert (clone / o["path"]).exists(), o["path"]
    _check_clean_clone(clone)


@pytest.mark.slow
def test_s3_remote_verify_catches_a_damaged_object(
        locked_project: Path, s3_server: S3Server, s3_url: str, tmp_path: Path) -> None:
    """A raw clip's object replaced in the bucket: with ``verify = true`` (committed with
    the remote) pull exits non-zero naming the output, and the bad bytes stay out."""
    _add_s3_remote(locked_project, s3_url, s3_server.endpoint, verify=True)
    run_cmd(dvc("push", "-q"), locked_project)
    name, md5 = sorted(tracked_file_md5s(locked_project, RAW_DIR).items())[0]
    bucket, prefix = s3_url.removeprefix("s3://").split("/", 1)
    good = (locked_project / RAW_DIR / name).read_bytes()
    s3_server.client().put_object(Bucket=bucket, Key=f"{prefix}/files/md5/{md5[:2]}/{md5[2:]}",
                                  Body=good[:64] + b"\xde\xad\xbe\xef" + good[68:])

    clone = _clone(locked_project, tmp_path / "clone")
    _s3_credentials(clone)
    proc = run_cmd(dvc("pull"), clone, check=False)
    assert proc.returncode != 0
    assert "Checkout failed" in proc.stderr and RAW_DIR in proc.stderr
    assert md5 not in cache_objects(clone)
    assert not (clone / RAW_DIR / name).exists()
