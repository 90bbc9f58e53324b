"""A real HTTP(S) server with a login form, run in a thread of the test process.

    server = FormServer(ca=TestCA(...)).start()   # users: USERS below
    server.url("/login")    # http://127.0.0.1:PORT/login (https:// with a CA)
    server.bodies           # every form body received, raw bytes, in order
    server.stop()

``POST /login`` reads the ``user`` and ``pass`` fields (percent-decoded to bytes) and answers
204 for a good password, 403 for a wrong one and 404 for an unknown user; ``/login200``
answers 200 with a body instead of 204.  ``/error`` answers 500, ``/redirect`` 302,
``/slow`` waits ``slow_seconds`` before answering, and ``/continue`` sends a
``100 Continue`` first.
"""

from __future__ import annotations

import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote_to_bytes

from ldap_server import TestCA

# login -> password: every byte a form encoding can trip over
USERS = {
    "alice": b"alice-pw",
    "jörg": "p&ss=wo rd+%25\r\n€".encode(),
}


def form_fields(body: bytes) -> dict[bytes, bytes]:
    out = {}
    for pair in body.split(b"&"):
        name, _, value = pair.partition(b"=")
        out[unquote_to_bytes(name)] = unquote_to_bytes(value)
    return out


class FormServer:
    def __init__(self, users: dict[str, bytes] | None = None, ca: TestCA | None = None,
                 slow_seconds: float = 5.0):
        self.users = {k.encode(): v for k, v in (users or USERS).items()}
        self.bodies: list[bytes] = []
        self.slow_seconds = slow_seconds
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.bodies.append(body)
                path = self.path
                if path == "/error":
                    return self.answer(500)
                if path == "/redirect":
                    return self.answer(302, {"Location": "/login"})
                if path == "/slow":
                    time.sleep(outer.slow_seconds)
                if path == "/continue":
                    self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                fields = form_fields(body)
                stored = outer.users.get(fields.get(b"user", b""))
                if stored is None:
                    return self.answer(404)
                if stored != fields.get(b"pass"):
                    return self.answer(403)
                return self.answer(200 if path == "/login200" else 204)

            def answer(self, code: int, headers: dict[str, str] | None = None) -> None:
                text = b"" if code == 204 else b"answer\n"
                self.send_response(code)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if code != 204:
                    self.send_header("Content-Length", str(len(text)))
                self.send_header("Connection", "close")
                try:
                    self.end_headers()
                    self.wfile.write(text)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (/slow)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if ca is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(ca.cert, ca.key)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str = "/login") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def start(self) -> FormServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)
