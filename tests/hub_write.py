"""The write half of the local Hub (tests/hub_fixture.py): what ``huggingface_hub``'s
``HfApi.create_repo``, ``create_commit`` and ``upload_folder`` send, answered as the Hub
answers it (the legacy LFS path the client takes with ``HF_HUB_DISABLE_XET=1``, which
conftest sets; Xet storage is not spoken):

    POST /api/repos/create                      {name, organization, type, ...}
        -> 200 {"url"}; 409 when it exists (the client's exist_ok); 401 without a token
    POST /api/validate-yaml                     a README's front matter, before any upload
    POST /api/models/{repo}/preupload/{rev}     -> per file: uploadMode lfs|regular, oid
    POST /{repo}.git/info/lfs/objects/batch     LFS batch API: upload + verify actions
    PUT  /lfs-upload/{oid}                      the object's bytes (checked by SHA-256)
    POST /lfs-verify                            {oid, size}
    POST /api/models/{repo}/commit/{rev}        NDJSON: header, file (base64), lfsFile,
                                                deletedFile -> {"commitUrl", "commitOid"}

Every write but the object PUT (a presigned URL on the Hub, sent without the token) needs
``Authorization: Bearer TOKEN`` with a token in ``write_tokens`` (401 otherwise), as the
Hub does; reads stay anonymous. ``commits`` records each commit's
message and the paths it touched.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".onnx")
TOKEN = "hf_zoo_fixture_write_token"
_PREUPLOAD = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>[^/]+)$")
_COMMIT = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>[^/]+)$")
_BATCH = re.compile(r"^/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def read_body(h: BaseHTTPRequestHandler) -> bytes:
    """The request's body: Content-Length, or chunked transfer encoding."""
    if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
        out = bytearray()
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                h.rfile.readline()
                return bytes(out)
            out += h.rfile.read(size)
            h.rfile.readline()
    return h.rfile.read(int(h.headers.get("Content-Length") or 0))


class HubWriteAPI:
    """Mixed into FakeHub: its ``repos``, ``url``, ``add_repo`` and ``_record``."""

    repos: dict[str, Any]
    url: str

    def _init_write(self) -> None:
        self.write_tokens: set[str] = {TOKEN}
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> bytes, uploaded, not yet committed
        self.commits: list[dict[str, Any]] = []  # {"repo", "summary", "paths"} per commit

    def _json(self, h: BaseHTTPRequestHandler, status: int, doc: Any, code: str = "") -> None:
        body = json.dumps(doc).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        if code:
            h.send_header("X-Error-Code", code)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _authorised(self, h: BaseHTTPRequestHandler) -> bool:
        auth = h.headers.get("Authorization") or ""
        return auth.startswith("Bearer ") and auth[len("Bearer ") :] in self.write_tokens

    def _write(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = unquote(h.path.split("?", 1)[0])
        body = read_body(h)
        if method == "PUT" and path.startswith("/lfs-upload/"):  # a presigned URL: no token
            oid = path[len("/lfs-upload/") :]
            if hashlib.sha256(body).hexdigest() != oid:
                return self._json(h, 400, {"error": "sha256 mismatch"})
            self.lfs_objects[oid] = body
            return self._json(h, 200, {})
        if not self._authorised(h):
            return self._json(h, 401, {"error": "Invalid credentials in Authorization header"})
        if method != "POST":
            return self._json(h, 405, {"error": "method not allowed"})
        if path == "/api/repos/create":
            return self._create(h, json.loads(body))
        if path == "/api/validate-yaml":
            return self._validate_yaml(h, json.loads(body))
        if path == "/lfs-verify":
            doc = json.loads(body)
            ok = len(self.lfs_objects.get(doc.get("oid"), b"")) == doc.get("size")
            return self._json(h, 200 if ok else 404, {} if ok else {"error": "not uploaded"})
        for pattern, handler in (
            (_PREUPLOAD, self._preupload),
            (_BATCH, self._batch),
            (_COMMIT, self._commit),
        ):
            m = pattern.match(path)
            if m is not None:
                if m.group("repo") not in self.repos:
                    return self._json(h, 404, {"error": "Repository not found"}, "RepoNotFound")
                return handler(h, m.group("repo"), body)
        return self._json(h, 404, {"error": "no such endpoint"})

    def _create(self, h: BaseHTTPRequestHandler, doc: dict[str, Any]) -> None:
        repo_id = f"{doc['organization']}/{doc['name']}" if doc.get("organization") else doc["name"]
        if doc.get("type") not in (None, "model"):
            return self._json(h, 400, {"error": "only model repos here"})
        if repo_id in self.repos:
            return self._json(h, 409, {"error": "You already created this model repo"})
        self.add_repo(repo_id, {})  # type: ignore[attr-defined]
        return self._json(h, 200, {"url": f"{self.url}/{repo_id}", "name": repo_id})

    def _validate_yaml(self, h: BaseHTTPRequestHandler, doc: dict[str, Any]) -> None:
        import yaml

        m = re.match(r"\A---\s*\n(.*?)\n---\s*\n", doc.get("content") or "", re.S)
        try:
            meta = yaml.safe_load(m.group(1)) if m else {}
        except yaml.YAMLError as exc:
            return self._json(h, 400, {"errors": [{"message": str(exc)}], "warnings": []})
        if m is not None and not isinstance(meta, dict):
            return self._json(h, 400, {"errors": [{"message": "not a mapping"}], "warnings": []})
        return self._json(h, 200, {"errors": [], "warnings": []})

    def _preupload(self, h: BaseHTTPRequestHandler, repo_id: str, body: bytes) -> None:
        repo = self.repos[repo_id]
        files = []
        for f in json.loads(body)["files"]:
            lfs = f["path"].endswith(LFS_SUFFIXES) or f["size"] > 10_000_000
            have = repo.files.get(f["path"])
            oid = None
            if have is not None:
                oid = hashlib.sha256(have).hexdigest() if lfs else git_blob_sha1(have)
            files.append(
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": oid,
                }
            )
        return self._json(h, 200, {"files": files, "commitOid": repo.commit})

    def _batch(self, h: BaseHTTPRequestHandler, repo_id: str, body: bytes) -> None:
        doc = json.loads(body)
        out = []
        for obj in doc["objects"]:
            item: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.lfs_objects:
                item["actions"] = {
                    "upload": {"href": f"{self.url}/lfs-upload/{obj['oid']}"},
                    "verify": {"href": f"{self.url}/lfs-verify"},
                }
            out.append(item)
        return self._json(h, 200, {"transfer": "basic", "objects": out})

    def _commit(self, h: BaseHTTPRequestHandler, repo_id: str, body: bytes) -> None:
        repo = self.repos[repo_id]
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            return self._json(h, 400, {"error": "the first line must be the header"})
        files = dict(repo.files)
        paths = []
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                data = self.lfs_objects.get(value["oid"])
                if data is None:
                    return self._json(h, 422, {"error": f"LFS object {value['oid']} not uploaded"})
                files[value["path"]] = data
            elif line["key"] == "deletedFile":
                files.pop(value["path"], None)
            else:
                return self._json(h, 400, {"error": f"unknown key {line['key']}"})
            paths.append(value["path"])
        commit = self.add_repo(repo_id, files)  # type: ignore[attr-defined]
        self.commits.append(
            {"repo": repo_id, "summary": lines[0]["value"].get("summary"), "paths": paths}
        )
        return self._json(
            h,
            200,
            {
                "commitUrl": f"{self.url}/{repo_id}/commit/{commit}",
                "commitOid": commit,
                "pullRequestUrl": None,
            },
        )
