"""A small Hugging Face Hub (and torchvision mirror) on loopback, for the real clients.

It speaks the part of the Hub's protocol that ``huggingface_hub``'s downloads use:

    HEAD/GET /{repo_id}/resolve/{revision}/{filename}
        X-Repo-Commit, ETag (git blob SHA-1, or the LFS SHA-256), X-Linked-Etag and
        X-Linked-Size for LFS files, Content-Length, Range -> 206 Partial Content,
        404 with X-Error-Code: RepoNotFound / RevisionNotFound / EntryNotFound
    GET /api/agent-harnesses -> 404 (the client asks once; a 404 is fine)
    GET /torchvision/{filename}  plain files, Range supported (ZOO_TORCHVISION_MIRROR)

and the part its uploads use (repo creation, preupload, LFS batch and upload, the NDJSON
commit): tests/hub_write.py.

Tests create repos, then switch on faults: wrong bytes under the right ETag, a
connection cut after N bytes (once), Range headers ignored (200 and the whole body), a
stall before the body (a server slower than the client's timeout). Every request is
recorded for assertions (``files_requested`` names the files of one repo that were asked
for). ``transformers_repo_files`` turns a transformers model made by a test into a repo's
files.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from tests.hub_write import HubWriteAPI

_LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".onnx")
_RESOLVE = re.compile(r"^/(?P<repo>.+?)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    files: dict[str, bytes]
    commit: str
    branches: dict[str, str] = field(default_factory=dict)

    def etag(self, name: str) -> tuple[str, bool]:
        """(etag, is_lfs)."""
        data = self.files[name]
        if name.endswith(_LFS_SUFFIXES):
            return hashlib.sha256(data).hexdigest(), True
        return git_blob_sha1(data), False


@dataclass
class Request:
    method: str
    path: str
    range: str | None


class FakeHub(HubWriteAPI):
    """The server's state; ``url`` is its base URL (``HF_ENDPOINT``)."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.torchvision: dict[str, bytes] = {}
        self.requests: list[Request] = []
        self.corrupt: set[tuple[str, str]] = set()  # (repo, file): wrong bytes, right ETag
        self.cut_after: dict[tuple[str, str], int] = {}  # (repo, file): close after N bytes, once
        self.ignore_range: set[tuple[str, str]] = set()  # (repo, file): answer 200, whole body
        self.stall: dict[tuple[str, str], float] = {}  # (repo, file): seconds before the body
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""
        self._init_write()

    # ----------------------------------------------------------------------- set-up
    def add_repo(self, repo_id: str, files: dict[str, bytes]) -> str:
        """Create (or add a new commit to) a repo; returns the commit hash."""
        digest = hashlib.sha1(repo_id.encode())
        for name in sorted(files):
            digest.update(name.encode() + hashlib.sha256(files[name]).digest())
        commit = digest.hexdigest()
        self.repos[repo_id] = Repo(dict(files), commit, {"main": commit})
        return commit

    def add_torchvision_file(self, name: str, data: bytes) -> None:
        self.torchvision[name] = data

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def count(self, method: str | None = None, contains: str = "") -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method) and contains in r.path
            )

    def files_requested(self, repo_id: str) -> set[str]:
        """Names of the files of ``repo_id`` that were asked for (HEAD or GET)."""
        prefix = f"/{repo_id}/resolve/"
        with self._lock:
            paths = [r.path.split("?", 1)[0] for r in self.requests]
        return {unquote(p[len(prefix) :].split("/", 1)[1]) for p in paths if p.startswith(prefix)}

    def hub_requests(self) -> list[Request]:
        """Requests other than the client's agent-harness lookup."""
        with self._lock:
            return [r for r in self.requests if not r.path.startswith("/api/agent-harnesses")]

    # ----------------------------------------------------------------------- serving
    def _record(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append(
                Request(handler.command, handler.path, handler.headers.get("Range"))
            )

    def start(self) -> None:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                hub._record(self)
                hub._serve(self, body=False)

            def do_GET(self) -> None:
                hub._record(self)
                hub._serve(self, body=True)

            def do_POST(self) -> None:
                hub._record(self)
                hub._write(self, "POST")

            def do_PUT(self) -> None:
                hub._record(self)
                hub._write(self, "PUT")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str | None) -> None:
        h.send_response(status)
        if code:
            h.send_header("X-Error-Code", code)
        h.send_header("Content-Length", "0")
        h.end_headers()

    def _serve(self, h: BaseHTTPRequestHandler, *, body: bool) -> None:
        path = h.path.split("?", 1)[0]
        if path.startswith("/torchvision/"):
            name = unquote(path[len("/torchvision/") :])
            data = self.torchvision.get(name)
            if data is None:
                return self._error(h, 404, None)
            return self._send(h, data, {}, body=body, key=("torchvision", name))
        m = _RESOLVE.match(path)
        if m is None:
            return self._error(h, 404, None)
        repo_id, rev, name = m.group("repo"), unquote(m.group("rev")), unquote(m.group("file"))
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(h, 404, "RepoNotFound")
        commit = repo.branches.get(rev, rev if rev == repo.commit else None)
        if commit is None:
            return self._error(h, 404, "RevisionNotFound")
        if name not in repo.files:
            h.send_response(404)
            h.send_header("X-Error-Code", "EntryNotFound")
            h.send_header("X-Repo-Commit", commit)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return None
        data = repo.files[name]
        etag, lfs = repo.etag(name)
        headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"'}
        if lfs:
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(len(data))
        if (repo_id, name) in self.corrupt:
            flipped = bytearray(data)
            flipped[len(flipped) // 2] ^= 0xFF
            data = bytes(flipped)
        return self._send(h, data, headers, body=body, key=(repo_id, name))

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        data: bytes,
        headers: dict[str, str],
        *,
        body: bool,
        key: tuple[str, str],
    ) -> None:
        start = 0
        rng = h.headers.get("Range")
        status = 200
        if body and rng and key not in self.ignore_range:
            m = re.match(r"bytes=(\d+)-$", rng.strip())
            if m and int(m.group(1)) < len(data):
                start, status = int(m.group(1)), 206
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(data) - start))
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        if not body:
            return
        if key in self.stall:
            import time

            h.wfile.flush()
            time.sleep(self.stall[key])
        cut = None
        if start == 0:
            with self._lock:
                cut = self.cut_after.pop(key, None)
        payload = data[start:] if cut is None else data[start:cut]
        view = memoryview(payload)
        for i in range(0, len(view), 1 << 20):
            h.wfile.write(view[i : i + (1 << 20)])
        h.wfile.flush()
        if cut is not None:  # hang up mid-body: the client sees a truncated transfer
            h.close_connection = True
            import socket

            with suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)


def transformers_repo_files(
    model: Any, processor: dict[str, Any] | None = None, license_id: str | None = "apache-2.0"
) -> dict[str, bytes]:
    """A transformers model's repo as the Hub holds it: what ``save_pretrained`` writes
    (config.json, model.safetensors), a preprocessor_config.json and a model card whose
    YAML front matter names ``license_id``."""
    import json
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="hf-repo-") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        files = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
    if processor is not None:
        files["preprocessor_config.json"] = json.dumps(processor, indent=2).encode()
    if license_id is not None:
        files["README.md"] = f"---\nlicense: {license_id}\n---\n# tiny test model\n".encode()
    return files


@contextmanager
def serving_timm_default(monkeypatch: Any) -> Iterator[FakeHub]:
    """A running hub that serves `timm:test_resnet`'s default tag (``.r160_in1k``, random
    weights) to the real client: ``HF_ENDPOINT`` pointed at it, offline mode lifted."""
    import timm
    from safetensors.torch import save

    weights = timm.create_model("test_resnet", pretrained=False).state_dict()
    with running_hub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # set where CI runs
        hub.add_repo(
            "timm/test_resnet.r160_in1k",
            {"model.safetensors": save({k: v.contiguous() for k, v in weights.items()})},
        )
        yield hub


@contextmanager
def running_hub() -> Iterator[FakeHub]:
    hub = FakeHub()
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
