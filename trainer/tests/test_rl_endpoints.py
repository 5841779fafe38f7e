"""The RL HTTP endpoints' bounds: tokens checked before any body is read, bounded bodies and connections, weight
updates of the inference server only with an admin token (or on loopback)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import TRAINER
from forge_trainer.grpo_server import Limits, make_handler
from forge_trainer.httpbounds import BoundedHTTPServer, is_loopback
from forge_trainer.serve import check_weight_updates
from forge_trainer.serve import make_handler as make_serve_handler

TOKEN = "rollout-token-0123456789"  # noqa: S105 - a test token
ADMIN = "admin-token-0123456789ab"
HUGE = 256 * 1024 * 1024
ANY = "0.0.0.0"  # noqa: S104 - the address under test, nothing binds to it here


@pytest.fixture
def grpo_server() -> Iterator[tuple[str, int]]:
    # No session: every request below is refused before the handler would touch it.
    handler = make_handler(None, [""], TOKEN, ADMIN, Limits(connections=2))  # type: ignore[arg-type]
    httpd = BoundedHTTPServer(("127.0.0.1", 0), handler, 2)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield "127.0.0.1", int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


def headers_only(addr: tuple[str, int], head: str, wait: float = 20.0) -> tuple[bytes, bool]:
    """Sends a request's headers and none of its body; returns the answer and whether the server then closed the
    connection. A server that waits for the body answers nothing: the read times out after `wait` seconds."""
    with socket.create_connection(addr, timeout=wait) as s:
        s.sendall(head.encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
        try:
            rest = s.recv(65536)
            while rest:
                answer += rest
                rest = s.recv(65536)
            closed = True
        except TimeoutError:
            closed = False
    return answer, closed


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def answer_of(addr: tuple[str, int], head: str) -> tuple[bytes, bool]:
    """headers_only, but a 503 (server busy) is tried again for up to 5 s: the server gives a handler thread's slot back
    just after it closes that connection, so on a loaded machine the next request may still find both slots held."""
    deadline = time.monotonic() + 5
    while True:
        answer, closed = headers_only(addr, head)
        if not answer or status_of(answer) != 503 or time.monotonic() > deadline:
            return answer, closed
        time.sleep(0.05)


def test_an_unauthenticated_huge_upload_is_refused_before_its_body_is_read(grpo_server: tuple[str, int]) -> None:
    for head in (
        f"PUT /v1/rollouts/r1 HTTP/1.1\r\nHost: x\r\nContent-Length: {HUGE}\r\n\r\n",
        f"PUT /v1/rollouts/r1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Length: {HUGE}\r\n\r\n",
        f"POST /v1/update HTTP/1.1\r\nHost: x\r\nContent-Length: {HUGE}\r\n\r\n",
        # The rollout token is not the admin token.
        f"POST /v1/update HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {HUGE}\r\n\r\n",
    ):
        answer, closed = answer_of(grpo_server, head)
        # Answered from the headers alone (none of the 256 MiB was sent), and the connection closed.
        assert status_of(answer) == 401, answer
        assert closed


def test_bodies_are_bounded_per_endpoint_before_they_are_read(grpo_server: tuple[str, int]) -> None:
    d = Limits()
    head = f"PUT /v1/rollouts/r1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
    answer, closed = answer_of(grpo_server, head + f"Content-Length: {d.rollout_bytes + 1}\r\n\r\n")
    assert status_of(answer) == 413 and b"FORGE_GRPO_MAX_ROLLOUT_BYTES" in answer and closed
    head = f"POST /v1/update HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n"
    answer, closed = answer_of(grpo_server, head + f"Content-Length: {d.control_bytes + 1}\r\n\r\n")
    assert status_of(answer) == 413 and b"FORGE_GRPO_MAX_CONTROL_BYTES" in answer and closed
    assert d.control_bytes < d.rollout_bytes < HUGE


def test_limits_come_from_the_environment_and_bad_values_are_named() -> None:
    env = {"FORGE_GRPO_MAX_ROLLOUT_BYTES": "1000", "FORGE_GRPO_MAX_CONNECTIONS": "3"}
    assert Limits.from_env(env) == Limits(rollout_bytes=1000, control_bytes=Limits().control_bytes, connections=3)
    with pytest.raises(Exception, match="FORGE_GRPO_MAX_CONTROL_BYTES"):
        Limits.from_env({"FORGE_GRPO_MAX_CONTROL_BYTES": "-1"})


def test_connections_beyond_the_bound_get_503_at_once(grpo_server: tuple[str, int]) -> None:
    # Two idle connections hold both handler threads (each waits for a request line).
    held = [socket.create_connection(grpo_server, timeout=5) for _ in range(2)]
    try:
        time.sleep(0.3)
        answer, closed = headers_only(grpo_server, "GET /v1/policy HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(answer) == 503 and closed
    finally:
        for s in held:
            s.close()
    # Once they are gone, the next connection is served (401: no token) — the slots were given back.
    deadline = time.monotonic() + 5
    while True:
        answer, _ = headers_only(grpo_server, "GET /v1/policy HTTP/1.1\r\nHost: x\r\n\r\n")
        if status_of(answer) == 401 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status_of(answer) == 401


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "localhost"))
    assert not any(is_loopback(h) for h in (ANY, "::", "10.0.0.5", "rollout-1"))


def test_weight_updates_need_an_admin_token_unless_on_loopback() -> None:
    check_weight_updates("127.0.0.1", True, "")
    check_weight_updates(ANY, True, ADMIN)
    check_weight_updates(ANY, False, "")
    with pytest.raises(Exception, match="FORGE_INFERENCE_ADMIN_TOKEN"):
        check_weight_updates(ANY, True, "")


def test_serve_refuses_to_start_with_weight_updates_on_all_interfaces_without_a_token(tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("FORGE_INFERENCE_ADMIN_TOKEN", "FORGE_SERVE_ADMIN_TOKEN")}
    args = ["serve", "--model", str(tmp_path), "--host", ANY, "--port", "0", "--allow-weight-updates"]
    done = subprocess.run([*TRAINER, *args], env=env, capture_output=True, text=True, timeout=120)
    # Refused before the model is even looked at (tmp_path is no model): the admin token is named.
    assert done.returncode != 0
    assert "FORGE_INFERENCE_ADMIN_TOKEN" in done.stdout + done.stderr


def test_a_weight_update_with_a_wrong_token_is_refused_before_its_body_is_read() -> None:
    handler = make_serve_handler(None, allow_weight_updates=True, admin_token=ADMIN)  # type: ignore[arg-type]
    httpd = BoundedHTTPServer(("127.0.0.1", 0), handler, 4)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        addr = ("127.0.0.1", int(httpd.server_address[1]))
        head = "POST /update_weights_from_disk HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
        answer, closed = headers_only(addr, head)
        assert status_of(answer) == 401 and closed
    finally:
        httpd.shutdown()
        httpd.server_close()
