"""A Hugging Face Hub look-alike on 127.0.0.1, so release tests run the real clients offline.

It speaks the subset of the Hub's HTTP API that ``huggingface_hub`` (push, download,
``HfFileSystem``), ``datasets.load_dataset`` and ``SentenceTransformer`` use: whoami, create
repo, repo info, preupload (upload mode plus the remote ``oid`` that lets ``create_commit``
skip unchanged files), the Git LFS batch API with upload and verify, the NDJSON commit, tree
listing, paths-info, refs, commits, tags, YAML validation and ``resolve`` (GET with ranges,
HEAD with the ``X-Repo-Commit`` / ``ETag`` / ``X-Linked-*`` metadata headers).

State lives in memory and commits are applied all-or-nothing, like the Hub: a commit whose
LFS object was never verified is refused and leaves the branch where it was. Tests inject
HTTP failures with :meth:`FakeHub.fail` and read every request from :attr:`FakeHub.requests`.
Xet storage is not implemented: set ``HF_HUB_DISABLE_XET=1`` so clients use LFS.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

LFS_PATTERNS = (
    "*.parquet", "*.arrow", "*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.gguf",
    "*.onnx", "*.npy", "*.npz", "*.png", "*.jpg", "*.jpeg", "*.gif", "*.zip", "*.gz", "*.tar",
    "*.model", "*.h5", "*.msgpack",
)  # fmt: skip
REGULAR_FILE_LIMIT = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS)
KINDS = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
INVALID_TOKEN = "Invalid credentials in Authorization header"


def git_blob_oid(content: bytes) -> str:
    """The object id git gives a blob (what the Hub returns as ``oid`` for regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Blob:
    """File content plus whether the repo stores it through LFS (then git holds a pointer)."""

    content: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def pointer(self) -> bytes:
        return (
            "version https://git-lfs.github.com/spec/v1\n"
            f"oid sha256:{self.sha256}\nsize {len(self.content)}\n"
        ).encode()

    @property
    def git_oid(self) -> str:
        return git_blob_oid(self.pointer if self.lfs else self.content)

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid


@dataclass
class Commit:
    oid: str
    title: str
    message: str
    parent: str | None
    files: dict[str, Blob]
    date: str


@dataclass
class Repo:
    """One repository: commits (oldest first), branches and tags pointing at commit ids."""

    repo_type: str
    repo_id: str
    private: bool
    sdk: str | None = None
    commits: list[Commit] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    created_at: str = field(default_factory=_now)

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]

    def commit(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision) or self.tags.get(revision)
        if oid is None and len(revision) >= 7:
            oid = next((c.oid for c in self.commits if c.oid.startswith(revision)), None)
        return next((c for c in self.commits if c.oid == oid), None)

    def head(self, branch: str = "main") -> Commit:
        return self.commit(branch)  # type: ignore[return-value]

    def add_commit(self, title: str, message: str, files: dict[str, Blob], branch: str) -> Commit:
        parent = self.branches.get(branch)
        digest = hashlib.sha1(f"{parent}\n{title}\n{len(self.commits)}\n".encode())
        for path in sorted(files):
            digest.update(f"{path}\0{files[path].git_oid}\n".encode())
        commit = Commit(digest.hexdigest(), title, message, parent, dict(files), _now())
        self.commits.append(commit)
        self.branches[branch] = commit.oid
        return commit

    def history(self, revision: str) -> list[Commit]:
        """Commits reachable from ``revision``, newest first."""
        by_oid = {c.oid: c for c in self.commits}
        found, commit = [], self.commit(revision)
        while commit is not None:
            found.append(commit)
            commit = by_oid.get(commit.parent) if commit.parent else None
        return found


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int


class HubError(Exception):
    """An error response: status, JSON ``error`` and the Hub's ``X-Error-Code`` header."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class FakeHub:
    """The server and its state; use as a context manager, pass :attr:`endpoint` to clients."""

    def __init__(
        self, token: str = "hf_fake_write_token", user: str = "tester", orgs: tuple[str, ...] = ()
    ) -> None:
        self.token, self.user, self.orgs = token, user, orgs
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.lfs_uploaded: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeHub:
        handler = type("BoundHandler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() the hub first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- test helpers ----------------------------------------------------------------------
    def fail(self, method: str, path_regex: str, status: int = 503, times: int = 1) -> None:
        """Answer the next ``times`` matching requests with ``status`` instead of serving them."""
        with self.lock:
            self.faults.append(Fault(method.upper(), re.compile(path_regex), status, times))

    def repo(self, repo_type: str, repo_id: str) -> Repo:
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_type: str, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        commit = self.repo(repo_type, repo_id).commit(revision)
        assert commit is not None, f"no revision {revision}"
        return {path: blob.content for path, blob in commit.files.items()}

    def requests_to(self, method: str, path_regex: str) -> list[tuple[str, str, int]]:
        pattern = re.compile(path_regex)
        return [r for r in self.requests if r[0] == method and pattern.search(r[1])]

    # -- request handling ------------------------------------------------------------------
    def injected_fault(self, method: str, path: str) -> int | None:
        with self.lock:
            for fault in self.faults:
                if fault.remaining > 0 and fault.method == method and fault.pattern.search(path):
                    fault.remaining -= 1
                    return fault.status
        return None

    def caller(self, authorization: str | None) -> str | None:
        """The user behind the bearer token; a token that is not ours is a 401, like the Hub."""
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or value != self.token:
            raise HubError(401, INVALID_TOKEN)
        return self.user

    def can_write(self, caller: str | None, namespace: str) -> bool:
        return caller is not None and namespace in (self.user, *self.orgs)

    def readable_repo(self, caller: str | None, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not self.can_write(caller, repo.namespace)):
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def writable_repo(self, caller: str | None, repo_type: str, repo_id: str) -> Repo:
        repo = self.readable_repo(caller, repo_type, repo_id)
        if not self.can_write(caller, repo.namespace):
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    @staticmethod
    def revision(repo: Repo, revision: str) -> Commit:
        commit = repo.commit(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Requests are recorded in ``hub.requests`` instead of stderr."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- plumbing --------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.hub.requests.append((self.command, self.path, status))

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers=headers)

    def _dispatch(self, method: str) -> None:
        body = self._read_body()
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        status = self.hub.injected_fault(method, path)
        if status is not None:
            self._json(status, {"error": f"injected {status} for test"})
            return
        try:
            caller = self.hub.caller(self.headers.get("Authorization"))
            for route_method, pattern, handler in ROUTES:
                match = pattern.fullmatch(path)
                if match and method in route_method:
                    params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    with self.hub.lock:
                        handler(self, caller, body, query, **params)
                    return
            raise HubError(404, f"no route for {method} {path}")
        except HubError as err:
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._json(err.status, {"error": err.message}, headers)

    # -- account and repos -----------------------------------------------------------------
    def whoami(self, caller: str | None, body: bytes, query: dict) -> None:
        if caller is None:
            raise HubError(401, INVALID_TOKEN)
        orgs = [
            {"type": "org", "name": o, "fullname": o, "roleInOrg": "admin"} for o in self.hub.orgs
        ]
        self._json(
            200,
            {
                "type": "user",
                "id": "0" * 24,
                "name": caller,
                "fullname": caller.title(),
                "orgs": orgs,
                "auth": {
                    "type": "access_token",
                    "accessToken": {"displayName": "t", "role": "write"},
                },
            },
        )

    def create_repo(self, caller: str | None, body: bytes, query: dict) -> None:
        payload = json.loads(body)
        repo_type = payload.get("type") or "model"
        namespace = payload.get("organization") or caller or ""
        repo_id = f"{namespace}/{payload['name']}"
        if not self.hub.can_write(caller, namespace):
            raise HubError(403 if caller else 401, f"You don't have the rights to create {repo_id}")
        if repo_type == "space" and payload.get("sdk") not in (
            "gradio",
            "streamlit",
            "docker",
            "static",
        ):
            raise HubError(400, "Space sdk must be one of gradio, streamlit, docker, static")
        url = f"{self.hub.endpoint}/{URL_PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.hub.repos:
            message = f"You already created this {repo_type} repo"
            self._json(409, {"error": message, "url": url}, {"X-Error-Message": message})
            return
        repo = Repo(repo_type, repo_id, payload.get("visibility") == "private", payload.get("sdk"))
        attributes = {".gitattributes": Blob(GITATTRIBUTES.encode(), lfs=False)}
        repo.add_commit("initial commit", "", attributes, "main")
        self.hub.repos[(repo_type, repo_id)] = repo
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def repo_info(
        self, caller: str | None, body: bytes, query: dict, kind: str, repo: str, rev: str = "main"
    ) -> None:
        found = self.hub.readable_repo(caller, KINDS[kind], repo)
        commit = FakeHub.revision(found, rev)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo.encode()).hexdigest()[:24],
            "id": repo,
            "author": found.namespace,
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": found.created_at,
            "private": found.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": [self._sibling(p, b) for p, b in sorted(commit.files.items())],
        }
        if found.repo_type == "space":
            info["sdk"] = found.sdk
        self._json(200, info)

    @staticmethod
    def _sibling(path: str, blob: Blob) -> dict[str, Any]:
        sibling: dict[str, Any] = {
            "rfilename": path,
            "size": len(blob.content),
            "blobId": blob.git_oid,
        }
        if blob.lfs:
            sibling["lfs"] = {
                "size": len(blob.content),
                "sha256": blob.sha256,
                "pointerSize": len(blob.pointer),
            }
        return sibling

    def validate_yaml(self, caller: str | None, body: bytes, query: dict) -> None:
        content = json.loads(body).get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.DOTALL)
        if match:
            try:
                metadata = yaml.safe_load(match.group(1))
            except yaml.YAMLError as exc:
                self._json(400, {"errors": [{"message": f"Invalid YAML: {exc}"}]})
                return
            if metadata is not None and not isinstance(metadata, dict):
                self._json(400, {"errors": [{"message": "metadata must be a YAML mapping"}]})
                return
        self._json(200, {"warnings": []})

    # -- upload ----------------------------------------------------------------------------
    def preupload(
        self, caller: str | None, body: bytes, query: dict, kind: str, repo: str, rev: str
    ) -> None:
        found = self.hub.writable_repo(caller, KINDS[kind], repo)
        head = FakeHub.revision(found, rev)
        answers = []
        for item in json.loads(body)["files"]:
            path, size = item["path"], item["size"]
            sample = base64.b64decode(item["sample"])
            lfs = (
                size > REGULAR_FILE_LIMIT
                or b"\0" in sample
                or any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], p) for p in LFS_PATTERNS)
            )
            answer: dict[str, Any] = {
                "path": path,
                "uploadMode": "lfs" if lfs else "regular",
                "shouldIgnore": False,
            }
            existing = head.files.get(path)
            if existing is not None:
                answer["oid"] = existing.sha256 if existing.lfs else existing.git_oid
            answers.append(answer)
        self._json(200, {"files": answers, "commitOid": head.oid})

    def lfs_batch(
        self, caller: str | None, body: bytes, query: dict, repo: str, prefix: str = ""
    ) -> None:
        repo_type = {"": "model", "datasets/": "dataset", "spaces/": "space"}[prefix]
        self.hub.writable_repo(caller, repo_type, repo)
        payload = json.loads(body)
        if payload.get("operation") != "upload":
            raise HubError(400, "only uploads are supported")
        objects = []
        for obj in payload["objects"]:
            answer: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.hub.lfs_objects:
                answer["authenticated"] = True
                answer["actions"] = {
                    "upload": {
                        "href": f"{self.hub.endpoint}/_lfs/upload/{obj['oid']}",
                        "header": {},
                    },
                    "verify": {"href": f"{self.hub.endpoint}/_lfs/verify", "header": {}},
                }
            objects.append(answer)
        self._send(
            200,
            json.dumps({"transfer": "basic", "objects": objects}).encode(),
            content_type="application/vnd.git-lfs+json",
        )

    def lfs_upload(self, caller: str | None, body: bytes, query: dict, oid: str) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, "uploaded content does not match its sha256")
        self.hub.lfs_uploaded[oid] = body
        self._send(200, b"", headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'})

    def lfs_verify(self, caller: str | None, body: bytes, query: dict) -> None:
        if caller is None:
            raise HubError(401, INVALID_TOKEN)
        payload = json.loads(body)
        content = self.hub.lfs_uploaded.get(payload["oid"])
        if content is None or len(content) != payload["size"]:
            raise HubError(404, f"LFS object {payload['oid']} was not uploaded")
        self.hub.lfs_objects[payload["oid"]] = content
        self._json(200, {"success": True})

    def commit(
        self, caller: str | None, body: bytes, query: dict, kind: str, repo: str, rev: str
    ) -> None:
        found = self.hub.writable_repo(caller, KINDS[kind], repo)
        head = FakeHub.revision(found, rev)
        if rev not in found.branches:
            raise HubError(400, f"cannot commit to {rev}: not a branch")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the first NDJSON line must be the commit header")
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        if parent and not head.oid.startswith(parent):
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(head.files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value["path"]
            if key == "file":
                files[path] = Blob(base64.b64decode(value["content"]), lfs=False)
            elif key == "lfsFile":
                content = self.hub.lfs_objects.get(value["oid"])
                if content is None:
                    raise HubError(
                        422, f"Your push was rejected: LFS object {value['oid']} missing"
                    )
                files[path] = Blob(content, lfs=True)
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                files = {p: b for p, b in files.items() if not p.startswith(prefix)}
            else:
                raise HubError(400, f"unknown commit operation {key!r}")
        commit = found.add_commit(header["summary"], header.get("description", ""), files, rev)
        url = f"{self.hub.endpoint}/{URL_PREFIX[found.repo_type]}{repo}/commit/{commit.oid}"
        self._json(
            200, {"success": True, "commitOid": commit.oid, "commitUrl": url, "hookOutput": ""}
        )

    # -- reading ---------------------------------------------------------------------------
    def _entries(self, repo: Repo, commit: Commit, paths: list[str], expand: bool) -> list[dict]:
        folders = {str(p.rsplit("/", 1)[0]) for p in commit.files if "/" in p}
        folders |= {
            "/".join(f.split("/")[:i]) for f in list(folders) for i in range(1, f.count("/") + 1)
        }
        entries = []
        for path in paths:
            blob = commit.files.get(path)
            if blob is not None:
                entry: dict[str, Any] = {
                    "type": "file",
                    "oid": blob.git_oid,
                    "size": len(blob.content),
                    "path": path,
                }
                if blob.lfs:
                    entry["lfs"] = {
                        "oid": blob.sha256,
                        "size": len(blob.content),
                        "pointerSize": len(blob.pointer),
                    }
            elif path in folders:
                inside = sorted(
                    f"{p}:{b.git_oid}" for p, b in commit.files.items() if p.startswith(path + "/")
                )
                entry = {
                    "type": "directory",
                    "oid": hashlib.sha1("\n".join(inside).encode()).hexdigest(),
                    "size": 0,
                    "path": path,
                }
            else:
                continue
            if expand:
                last = self._last_change(repo, commit, path)
                entry["lastCommit"] = {"id": last.oid, "title": last.title, "date": last.date}
            entries.append(entry)
        return entries

    @staticmethod
    def _last_change(repo: Repo, commit: Commit, path: str) -> Commit:
        def state(c: Commit) -> list[tuple[str, str]]:
            return sorted(
                (p, b.git_oid) for p, b in c.files.items() if p == path or p.startswith(path + "/")
            )

        history = repo.history(commit.oid)
        last = history[0]
        for older in history[1:]:
            if state(older) != state(last):
                break
            last = older
        return last

    def tree(
        self,
        caller: str | None,
        body: bytes,
        query: dict,
        kind: str,
        repo: str,
        rev: str,
        path: str = "",
    ) -> None:
        found = self.hub.readable_repo(caller, KINDS[kind], repo)
        commit = FakeHub.revision(found, rev)
        recursive = query.get("recursive", ["False"])[0].lower() in ("1", "true")
        expand = query.get("expand", ["False"])[0].lower() in ("1", "true")
        path = path.strip("/")
        prefix = f"{path}/" if path else ""
        if path and not any(p.startswith(prefix) for p in commit.files):
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        names = set()
        for file_path in commit.files:
            if not file_path.startswith(prefix):
                continue
            parts = file_path[len(prefix) :].split("/")
            depth = len(parts) if recursive else 1
            for i in range(1, depth + 1):
                names.add(prefix + "/".join(parts[:i]))
        self._json(200, self._entries(found, commit, sorted(names), expand))

    def paths_info(
        self, caller: str | None, body: bytes, query: dict, kind: str, repo: str, rev: str
    ) -> None:
        found = self.hub.readable_repo(caller, KINDS[kind], repo)
        commit = FakeHub.revision(found, rev)
        if body.lstrip().startswith(b"{"):
            form = json.loads(body)
            paths, expand = form.get("paths", []), bool(form.get("expand"))
        else:
            form = parse_qs(body.decode())
            paths = form.get("paths", [])
            expand = form.get("expand", ["False"])[0].lower() in ("1", "true")
        self._json(200, self._entries(found, commit, [p.strip("/") for p in paths], expand))

    def refs(self, caller: str | None, body: bytes, query: dict, kind: str, repo: str) -> None:
        found = self.hub.readable_repo(caller, KINDS[kind], repo)

        def ref(name: str, oid: str, group: str) -> dict[str, str]:
            return {"name": name, "ref": f"refs/{group}/{name}", "targetCommit": oid}

        self._json(
            200,
            {
                "branches": [ref(n, o, "heads") for n, o in found.branches.items()],
                "converts": [],
                "tags": [ref(n, o, "tags") for n, o in found.tags.items()],
                "pullRequests": [],
            },
        )

    def commits(
        self, caller: str | None, body: bytes, query: dict, kind: str, repo: str, rev: str
    ) -> None:
        found = self.hub.readable_repo(caller, KINDS[kind], repo)
        FakeHub.revision(found, rev)
        self._json(
            200,
            [
                {
                    "id": c.oid,
                    "title": c.title,
                    "message": c.message,
                    "date": c.date,
                    "authors": [{"user": found.namespace}],
                }
                for c in found.history(rev)
            ],
        )

    def create_tag(
        self, caller: str | None, body: bytes, query: dict, kind: str, repo: str, rev: str
    ) -> None:
        found = self.hub.writable_repo(caller, KINDS[kind], repo)
        commit = FakeHub.revision(found, rev)
        tag = json.loads(body)["tag"]
        if tag in found.tags:
            raise HubError(409, "Tag reference exists already")
        found.tags[tag] = commit.oid
        self._json(200, {})

    def delete_tag(
        self, caller: str | None, body: bytes, query: dict, kind: str, repo: str, tag: str
    ) -> None:
        found = self.hub.writable_repo(caller, KINDS[kind], repo)
        if found.tags.pop(tag, None) is None:
            raise HubError(404, f"Invalid rev id: {tag}", "RevisionNotFound")
        self._json(200, {})

    def resolve(
        self,
        caller: str | None,
        body: bytes,
        query: dict,
        repo: str,
        rev: str,
        path: str,
        prefix: str = "",
    ) -> None:
        repo_type = {"": "model", "datasets/": "dataset", "spaces/": "space"}[prefix]
        found = self.hub.readable_repo(caller, repo_type, repo)
        commit = FakeHub.revision(found, rev)
        blob = commit.files.get(path)
        if blob is None:
            raise HubError(404, "Entry not found", "EntryNotFound")
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{blob.etag}"', "Accept-Ranges": "bytes"}
        if blob.lfs:
            headers["X-Linked-Etag"] = f'"{blob.sha256}"'
            headers["X-Linked-Size"] = str(len(blob.content))
        content, status = blob.content, 200
        wanted = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if wanted and content:
            start = (
                int(wanted.group(1))
                if wanted.group(1)
                else max(0, len(content) - int(wanted.group(2)))
            )
            end = int(wanted.group(2)) if wanted.group(1) and wanted.group(2) else len(content) - 1
            end = min(end, len(content) - 1)
            if start >= len(content):
                self._send(416, b"", headers={"Content-Range": f"bytes */{len(content)}"})
                return
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            content, status = content[start : end + 1], 206
        self._send(status, content, content_type="application/octet-stream", headers=headers)


_REPO = r"(?P<kind>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"
_GIT_REPO = r"/(?P<prefix>datasets/|spaces/)?(?P<repo>[^/]+/[^/]+)"
ROUTES: list[tuple[tuple[str, ...], re.Pattern[str], Any]] = (
    [
        (("GET",), re.compile(p), h)
        for p, h in [
            (r"/api/whoami-v2", _Handler.whoami),
            (rf"/api/{_REPO}(?:/revision/(?P<rev>[^/]+))?", _Handler.repo_info),
            (rf"/api/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", _Handler.tree),
            (rf"/api/{_REPO}/refs", _Handler.refs),
            (rf"/api/{_REPO}/commits/(?P<rev>[^/]+)", _Handler.commits),
        ]
    ]
    + [
        (("POST",), re.compile(p), h)
        for p, h in [
            (r"/api/repos/create", _Handler.create_repo),
            (r"/api/validate-yaml", _Handler.validate_yaml),
            (rf"/api/{_REPO}/preupload/(?P<rev>[^/]+)", _Handler.preupload),
            (rf"/api/{_REPO}/commit/(?P<rev>[^/]+)", _Handler.commit),
            (rf"/api/{_REPO}/paths-info/(?P<rev>[^/]+)", _Handler.paths_info),
            (rf"/api/{_REPO}/tag/(?P<rev>[^/]+)", _Handler.create_tag),
            (rf"{_GIT_REPO}\.git/info/lfs/objects/batch", _Handler.lfs_batch),
            (r"/_lfs/verify", _Handler.lfs_verify),
        ]
    ]
    + [
        (("PUT",), re.compile(r"/_lfs/upload/(?P<oid>[0-9a-f]{64})"), _Handler.lfs_upload),
        (("DELETE",), re.compile(rf"/api/{_REPO}/tag/(?P<tag>[^/]+)"), _Handler.delete_tag),
        (
            ("GET", "HEAD"),
            re.compile(rf"{_GIT_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"),
            _Handler.resolve,
        ),
    ]
)
