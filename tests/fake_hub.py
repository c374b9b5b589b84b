"""A small Hugging Face Hub on 127.0.0.1 for tests: the resolve endpoint's HEAD and GET, as huggingface_hub reads them.

    hub = FakeHub(); hub.add("owner/repo", "main", "file.pth", data); hub.start()
    env HF_ENDPOINT=hub.url  ->  huggingface_hub fetches from it

HEAD answers with the headers ``get_hf_file_metadata`` needs: ``X-Repo-Commit``, ``ETag`` (plus
``X-Linked-Etag`` / ``X-Linked-Size`` for Git LFS files: the etag is the file's sha256, as on the hub),
``Content-Length``. GET honours ``Range: bytes=N-`` with a 206 and ``Content-Range``. A file can be served
corrupted (different bytes than its etag states) or cut off after some bytes on its first GET(s) (then, optionally,
unavailable), to test refusals and resumed transfers. Every request is logged with its method, path, Range and Authorization.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubFile:
    data: bytes
    lfs: bool = True  # LFS files report their sha256 as the etag; small git files a sha1-like etag
    corrupt: bool = False  # serve other bytes than the etag states
    cut_after: int | None = None  # close the connection after this many body bytes ...
    cuts: int = 0  # ... on the first this many GETs,
    unavailable: int = 0  # then answer this many GETs with 503 (the hub went away), then serve normally
    gets: int = 0

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def served(self) -> bytes:
        if not self.corrupt:
            return self.data
        return bytes([self.data[0] ^ 0xFF]) + self.data[1:]


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    authorization: str | None


@dataclass
class FakeHub:
    files: dict = field(default_factory=dict)  # (repo, revision, path) -> HubFile
    log: list = field(default_factory=list)

    def add(self, repo: str, revision: str, path: str, data: bytes, **options) -> HubFile:
        self.files[(repo, revision, path)] = f = HubFile(data, **options)
        return f

    def gets(self, path_part: str = "") -> list[Request]:
        """GETs of files (resolve URLs) whose path holds ``path_part``."""
        return [r for r in self.resolves() if r.method == "GET" and path_part in r.path]

    def resolves(self) -> list[Request]:
        """Requests for files; huggingface_hub's other calls (its best-effort agent-registry fetch) left out."""
        return [r for r in self.log if "/resolve/" in r.path]

    def start(self) -> "FakeHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _lookup(self):
                hub.log.append(Request(self.command, unquote(urlsplit(self.path).path), self.headers.get("Range"),
                                       self.headers.get("Authorization")))
                m = RESOLVE.match(unquote(urlsplit(self.path).path))
                f = m and hub.files.get((m["repo"], m["rev"], m["path"]))
                if f is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("X-Error-Message", "Entry not found")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                return m, f

            def _common(self, m, f: HubFile, length: int):
                commit = m["rev"] if re.fullmatch(r"[0-9a-f]{40}", m["rev"]) else FAKE_COMMIT
                self.send_header("X-Repo-Commit", commit)
                etag = f.sha256 if f.lfs else hashlib.sha1(f.data).hexdigest()
                self.send_header("ETag", f'"{etag}"')
                if f.lfs:
                    self.send_header("X-Linked-Etag", f'"{etag}"')
                    self.send_header("X-Linked-Size", str(len(f.data)))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(length))

            def do_HEAD(self):
                m, f = self._lookup()
                if f is None:
                    return
                self.send_response(200)
                self._common(m, f, len(f.data))
                self.end_headers()

            def do_GET(self):
                m, f = self._lookup()
                if f is None:
                    return
                f.gets += 1
                if f.cuts < f.gets <= f.cuts + f.unavailable:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = f.served()
                start = 0
                rng = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if rng and int(rng[1]) < len(body):
                    start = int(rng[1])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self._common(m, f, len(body) - start)
                self.end_headers()
                part = body[start:]
                if f.cut_after is not None and f.gets <= f.cuts:
                    self.wfile.write(part[: f.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)  # the transfer breaks off mid-body
                    return
                self.wfile.write(part)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
