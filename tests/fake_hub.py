"""A tiny Hugging Face Hub on 127.0.0.1: the endpoints ``HfApi.create_repo`` and
``HfApi.upload_folder`` use, with files kept in memory, so ``push`` runs through the real
client without the network.

Endpoints: ``POST /api/repos/create``, ``POST /api/validate-yaml`` (a model card's front
matter must parse as YAML) and, per model repo, ``POST .../preupload/<rev>`` (every file is a
"regular" upload, sent base64 in the commit) and ``POST .../commit/<rev>`` (NDJSON).
Requests need ``Authorization: Bearer <token>``; a wrong token gets 401, the namespace
``nobody`` gets 404, as the real Hub answers.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

TOKEN = "hf_fake_write_token"
MISSING_NAMESPACE = "nobody"
_REPO = r"/api/models/(?P<repo>[^/]+/[^/]+)"


@dataclass
class Hub:
    url: str
    repos: dict[str, dict] = field(default_factory=dict)
    """repo id -> {"private": bool, "files": {path: bytes}, "commits": [message]}."""


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _reply(self, status: int, doc: object) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._reply(401, {"error": "Invalid credentials in Authorization header"})
                return
            if self.path == "/api/repos/create":
                doc = json.loads(body)
                repo = f"{doc['organization']}/{doc['name']}"
                if doc["organization"] == MISSING_NAMESPACE:
                    self._reply(404, {"error": "Repository Not Found"})
                    return
                hub.repos.setdefault(repo, {"private": doc.get("private"), "files": {},
                                            "commits": []})
                self._reply(200, {"url": f"{hub.url}/{repo}", "name": repo})
                return
            if self.path == "/api/validate-yaml":
                content = json.loads(body)["content"]
                try:
                    front = content.split("---\n")[1] if content.startswith("---\n") else ""
                    yaml.safe_load(front)
                except yaml.YAMLError as e:
                    self._reply(400, {"errors": [{"message": str(e)}]})
                    return
                self._reply(200, {"errors": [], "warnings": []})
                return
            if m := re.fullmatch(_REPO + r"/preupload/[^/?]+(\?.*)?", self.path):
                files = json.loads(body)["files"]
                self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                             "shouldIgnore": False} for f in files]})
                return
            if m := re.fullmatch(_REPO + r"/commit/[^/?]+(\?.*)?", self.path):
                repo = hub.repos.get(m["repo"])
                if repo is None:
                    self._reply(404, {"error": "Repository Not Found"})
                    return
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    if item["key"] == "header":
                        repo["commits"].append(item["value"]["summary"])
                    elif item["key"] == "file":
                        value = item["value"]
                        repo["files"][value["path"]] = base64.b64decode(value["content"])
                oid = f"{len(repo['commits']):040x}"
                self._reply(200, {"commitUrl": f"{hub.url}/{m['repo']}/commit/{oid}",
                                  "commitOid": oid, "pullRequestUrl": None})
                return
            self._reply(404, {"error": f"no such endpoint {self.path}"})

    return Handler


@contextmanager
def fake_hub() -> Iterator[Hub]:
    """A running fake Hub; ``hub.url`` is its endpoint (HF_ENDPOINT)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    hub = Hub(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
