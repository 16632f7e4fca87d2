"""A scripted HTTP server on loopback, for answers the WATS emulator never gives.

The emulator is the real server's stand-in and is used wherever it can produce the situation;
this stub answers what only a misconfigured network does: redirects, a proxy's HTML error page,
a 403, a JSON body of an unexpected shape, an answer that never comes, a connection closed
without an answer. Each request takes the next scripted answer; the last one repeats.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False      # never answer (until the stub stops)
    close: bool = False     # close the connection without a word

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


class Stub:
    def __init__(self, replies: list[Reply]) -> None:
        self.replies = list(replies)
        self.requests: list[tuple[str, str]] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.url = ""

    def next_reply(self, method: str, path: str) -> Reply:
        with self._lock:
            self.requests.append((method, path))
            return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


@contextmanager
def stub_server(*replies: Reply) -> Iterator[Stub]:
    stub = Stub(list(replies) or [Reply()])

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            reply = stub.next_reply(self.command, self.path)
            if reply.hang:
                stub.stopping.wait(60)
                self.close_connection = True
                return
            if reply.close:
                self.close_connection = True
                return
            data = reply.payload()
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _answer

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        stub.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
