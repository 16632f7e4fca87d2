"""A small hostile HTTP server for the uploader's hardening tests (issue 14).

It answers the version probe with 200 and every report POST with what ``mode`` says:

``forbid``   403 with a JSON message (a token that may read but not submit)
``endless``  500 with a body that never ends (written until the client hangs up)
``html``     200 with a proxy's login page
``accept``   200 with the report's id (the posts are counted; nothing is validated)
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><form>proxy login</form></body></html>"


class Hostile:
    def __init__(self, mode: str = "forbid") -> None:
        self.mode = mode
        self.posts = 0
        self.gets = 0
        self.endless_bytes: list[int] = []  # bytes written per endless answer before the client hung up
        self._lock = threading.Lock()
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                with hostile._lock:
                    hostile.gets += 1
                self._answer(200, json.dumps({"version": "hostile/1"}).encode())

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                with hostile._lock:
                    hostile.posts += 1
                mode = hostile.mode
                if mode == "forbid":
                    self._answer(403, json.dumps({"message": "token may not submit reports"}).encode())
                elif mode == "html":
                    self._answer(200, LOGIN_PAGE, "text/html; charset=utf-8")
                elif mode == "accept":
                    self._answer(200, b"{}")
                else:
                    self._endless()

            def _endless(self) -> None:
                self.send_response(500)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Connection", "close")  # no length: the body ends when the connection does
                self.end_headers()
                chunk = b"x" * 65536
                sent = 0
                try:
                    while sent < 8 * 1024**3:
                        self.wfile.write(chunk)
                        sent += len(chunk)
                except OSError:
                    pass
                finally:
                    with hostile._lock:
                        hostile.endless_bytes.append(sent)
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="hostile", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Hostile:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
