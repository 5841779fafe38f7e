"""The forge agent's Python (trainer/agent/), run as the container runs it: each file as a script of its own."""

import base64
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parents[1] / "agent"
TOKEN = "t0ken"  # noqa: S105 (the path token of a test agent)


def run(name: str, *args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(AGENT / name), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=30,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    root = tmp_path / "agent"
    (root / TOKEN / "output").mkdir(parents=True)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(AGENT / "serve.py"), str(root), str(port), "127.0.0.1"],
        env={**os.environ, "FORGE_AGENT_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    yield root, port
    proc.kill()
    proc.wait()


def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(method, path)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


def test_serve_answers_regular_files_under_the_token_folder_only(served: tuple[Path, int], tmp_path: Path) -> None:
    root, port = served
    (root / TOKEN / "output" / "model.bin").write_bytes(b"weights")
    (root / "outside.txt").write_text("not for the agent's clients")
    secret = tmp_path / "secret.txt"
    secret.write_text("operator file")
    (root / TOKEN / "output" / "escape").symlink_to(secret)
    os.mkfifo(root / TOKEN / "output" / "pipe")

    assert get(port, f"/{TOKEN}/output/model.bin") == (200, b"weights")
    assert get(port, f"/{TOKEN}/output/model.bin", "HEAD")[0] == 200
    assert get(port, "/outside.txt")[0] == 404  # outside the token folder
    assert get(port, f"/{TOKEN}/output/escape")[0] == 404  # a symlink out of it
    assert get(port, f"/{TOKEN}/output/pipe")[0] == 404  # a fifo: refused at once, never read
    assert get(port, f"/{TOKEN}/output/")[0] == 404  # no listing
    assert get(port, "/other-token/output/model.bin")[0] == 404


def test_done_lists_outputs_with_sha256_and_keeps_the_stderr_tail(tmp_path: Path) -> None:
    d = tmp_path / TOKEN
    (d / "output" / "sub").mkdir(parents=True)
    (d / "output" / "sub" / "a.txt").write_bytes(b"abc")
    (d / "output" / "link").symlink_to(d / "output" / "sub" / "a.txt")
    (d / "stderr.log").write_text("".join(f"line {i}\n" for i in range(30)))

    assert run("done.py", str(d), "3").returncode == 0
    doc = json.loads((d / "done.json").read_text())
    assert doc["exit_code"] == 3
    assert doc["files"] == [{"path": "sub/a.txt", "size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}]
    assert doc["stderr_tail"] == [f"line {i}" for i in range(10, 30)]
    assert not (d / "done.json.tmp").exists()


def test_spec_writes_the_signed_bytes_and_tee_keeps_the_last_progress_event(tmp_path: Path) -> None:
    spec = b'{"job_id": "x"}\n'
    env = {"FORGE_SPEC_B64": base64.b64encode(spec).decode()}
    assert run("spec.py", str(tmp_path / "spec.json"), env=env).returncode == 0
    assert (tmp_path / "spec.json").read_bytes() == spec

    progress = tmp_path / "progress.json"
    lines = [
        '{"event": "progress", "step": 1}\n',
        "plain output\n",
        '{"event": "progress", "step": 2}\n',
        '{"progress": "not json\n',
    ]
    r = run("tee.py", str(progress), stdin="".join(lines))
    assert r.stdout == "".join(lines)  # everything passes through
    assert json.loads(progress.read_text()) == {"event": "progress", "step": 2}
