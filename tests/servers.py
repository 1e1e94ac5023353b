"""Hostile HTTP servers on 127.0.0.1 for the outbound-request tests: each runs in a thread and
records what it received."""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Server:
    """``behaviour(handler)`` answers every request; ``requests`` counts them, ``bodies`` keeps them."""

    def __init__(self, behaviour) -> None:
        self.requests = 0
        self.bodies: list[bytes] = []
        self.arrived = threading.Event()  # set when the first request has been read
        self.release = threading.Event()  # behaviours that hold the connection wait for this
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                server.bodies.append(self.rfile.read(length) if length else b"")
                server.requests += 1
                server.arrived.set()
                # The client gave up on us: that is the point of most of these servers.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    behaviour(self, server)
                self.close_connection = True

            do_GET = do_POST = _handle

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/backchannel"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def answer(status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None):
    def behaviour(handler, _server):
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return behaviour


def redirect(location: str):
    return answer(302, headers={"Location": location})


def trickle_headers(interval: float = 0.2, count: int = 50):
    """One byte of the status line and headers every ``interval`` s (a per-read timeout never fires)."""

    def behaviour(handler, server):
        head = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * count + b"\r\nContent-Length: 0\r\n\r\n"
        for byte in head:
            if server.release.wait(interval):
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()

    return behaviour


def trickle_body(interval: float = 0.2, size: int = 50):
    def behaviour(handler, server):
        handler.send_response(200)
        handler.send_header("Content-Length", str(size))
        handler.end_headers()
        handler.wfile.flush()
        for _ in range(size):
            if server.release.wait(interval):
                return
            handler.wfile.write(b"x")
            handler.wfile.flush()

    return behaviour


def huge_body(size: int = 8 * 1024 * 1024):
    def behaviour(handler, _server):
        handler.send_response(200)
        handler.send_header("Content-Length", str(size))
        handler.end_headers()
        chunk = b"x" * 65536
        for _ in range(size // len(chunk)):
            handler.wfile.write(chunk)

    return behaviour


def hold():
    """Read the request, then say nothing until the test releases the server."""

    def behaviour(handler, server):
        server.release.wait(30)
        answer()(handler, server)

    return behaviour


class Silent:
    """Accepts TCP connections (the kernel does, from the backlog) and never reads or answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/backchannel"

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()


def dead_url() -> str:
    """A loopback URL where nothing listens."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there any more
    return f"http://127.0.0.1:{port}/backchannel"
