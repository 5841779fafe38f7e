"""
What the trainer's HTTP servers (grpo-server, serve) share to stay bounded: a threading server that serves at most
`max_connections` connections at once (503 at once beyond that, without reading the request), idle sockets that time
out, and a constant-time bearer check that a handler runs on the headers alone, before it reads any body.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
import threading
from http.server import ThreadingHTTPServer
from typing import Any

# A connection that sends nothing for this long is closed (a slow or idle client cannot hold a thread forever).
SOCKET_TIMEOUT_SECONDS = 60.0

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s"
)


def bearer_ok(authorization: str | None, expected: str) -> bool:
    """`Authorization: Bearer <expected>`, compared in constant time; an empty `expected` matches nothing."""
    got = authorization or ""
    return bool(expected) and got.startswith("Bearer ") and hmac.compare_digest(got[7:].encode(), expected.encode())


def is_loopback(host: str) -> bool:
    """Whether a bind address reaches only this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BoundedHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with at most `max_connections` handler threads; the next connection gets a 503 and is closed
    before anything of its request is read."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, max_connections: int) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            body = b'{"error": {"message": "server busy: too many connections, retry later"}}'
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY % (len(body), body))
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            if isinstance(request, socket.socket):
                request.settimeout(SOCKET_TIMEOUT_SECONDS)
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()
