"""A pass-through HTTP proxy in front of the real engine that records each request's method, path and
headers, so tests can see what a client really sent (a SigV4 signature, a bearer token, whether
``GET /`` was asked) while the engine answers as usual. Nothing is faked: every request reaches
the node and every answer is the node's."""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Recorder:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)

    def paths(self, method: str | None = None) -> list[str]:
        return [r.path for r in self.requests if method is None or r.method == method]


@contextmanager
def recording_proxy(target_url: str) -> Iterator[Recorder]:
    """``with recording_proxy(engine_url) as rec:`` -> ``rec.url`` forwards to the engine."""
    target = urllib.parse.urlsplit(target_url.split(",")[0])  # a cluster: its first node
    recorder = Recorder()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items()}
            with lock:
                recorder.requests.append(Recorded(self.command, self.path, headers))
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                forwarded = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
                conn.request(self.command, self.path, body=body, headers=forwarded)
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            self.send_response(resp.status)
            for key, value in resp.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
