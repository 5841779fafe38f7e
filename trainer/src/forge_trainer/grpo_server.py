"""
`forge-trainer grpo-server`: the long-lived trainer process of a GRPO trainer host (workers/grpo.ts starts one per
job it holds). It loads the policy and the reference model once (resuming from the job's newest checkpoint), then
serves over HTTP until SIGTERM, or until its parent goes away (stdin closes):

  GET  /health                              {status, job_id, session_id, version, sha256, step}
  GET  /v1/policy                           the current version {version, sha256, url}               (token)
  GET  /v1/policy/<version>/model.safetensors   that version's weights, header X-Forge-Sha256        (token)
  PUT  /v1/rollouts/<id>                    a rollout: {policy_version, prompt | prompt_token_ids,
                                            samples: [{token_ids, logprobs, reward}]}                 (token)
  POST /v1/update                           {step, groups: [{rollout_id, advantages}], rollout_tokens_per_s}
                                            -> the step's training_log line + {version, sha256, checkpoint} (admin);
                                            the step after the next (sent while the next one runs) waits for its turn
  POST /v1/rollout-texts                    {rollout_ids} -> {rollouts: {<id>: {prompt, texts, rewards}}}: the stored
                                            rollouts decoded, for the host to re-score them                (admin)
  POST /v1/verify-rollouts                  {rollout_ids, refused_workers, logprob_tolerance} -> {rejected: {<id>:
                                            {reason, detail, worker}}, checked, unverified, seconds}: TOPLOC
                                            proofs and logprobs checked by a prefill under each claimed version
                                            (rollout_verify.py); the refused workers' uploads are refused from then
                                            on (403)                                                        (admin)
  POST /v1/checkpoint                       a checkpoint of the current version now                    (admin)
  POST /v1/export                           the policy as the run's outputs -> {files: [{path, sha256, size}]} (admin)
  GET  /v1/final/<path>                     an exported file                                            (token)

`token` is FORGE_GRPO_TOKEN (rollout workers: weights and uploads), `admin` FORGE_GRPO_ADMIN_TOKEN (the host worker
only); both from the environment, never the command line. Errors are JSON {"error": {"message", ...}} with 400
(malformed), 401, 403 (an upload of a refused worker),
404, 409 (wrong step, missing or stale rollouts, a rollout id uploaded already), 410 (superseded by
another session, stopped, or unusable after a step failed past its weight update), 411, 413, 503 (too many
connections).

Bounds: the bearer token is checked on the headers alone, before any body is read (a refused request's body is never
read: the connection is closed). Bodies are bounded per endpoint: FORGE_GRPO_MAX_ROLLOUT_BYTES (PUT /v1/rollouts,
default 32 MiB) and FORGE_GRPO_MAX_CONTROL_BYTES (POST, default 4 MiB). At most FORGE_GRPO_MAX_CONNECTIONS connections
are served at once (default 256: above rollout workers times their concurrent rollouts; beyond that 503 at once, which
clients retry); a connection idle for 60 s is closed.
On SIGTERM or stdin EOF: a checkpoint of the current version (if it is newer than the last), then exit 0.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import FrameType
from typing import Any

from forge_trainer.contract import Events, PermanentError, dumps
from forge_trainer.grpo import GrpoSession
from forge_trainer.grpo_protocol import GrpoConfig, UpdateRefused, UpdateRequest
from forge_trainer.httpbounds import BoundedHTTPServer, bearer_ok
from forge_trainer.rollout_verify import RolloutVerifier, VerifyRequest

MIB = 1024 * 1024
WEIGHTS_PATH = re.compile(r"^/v1/policy/(\d+)/model\.safetensors$")
ROLLOUT_PATH = re.compile(r"^/v1/rollouts/([A-Za-z0-9._:@-]{1,200})$")
FINAL_PATH = re.compile(r"^/v1/final/([A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*)$")
CHUNK = 1 << 20


def _tokens() -> tuple[str, str]:
    token = os.environ.get("FORGE_GRPO_TOKEN", "")
    admin = os.environ.get("FORGE_GRPO_ADMIN_TOKEN", "")
    if len(token) < 16 or len(admin) < 16:
        raise PermanentError("FORGE_GRPO_TOKEN and FORGE_GRPO_ADMIN_TOKEN must be set (16 characters or more)")
    return token, admin


@dataclass(frozen=True)
class Limits:
    """How much one request may send, and how many connections are served at once."""

    rollout_bytes: int = 32 * MIB
    control_bytes: int = 4 * MIB
    connections: int = 256

    @staticmethod
    def from_env(env: Mapping[str, str]) -> Limits:
        def positive(name: str, default: int) -> int:
            raw = env.get(name, "")
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                value = 0
            if value < 1:
                raise PermanentError(f"{name} must be a positive integer, got {raw!r}")
            return value

        d = Limits()
        return Limits(
            rollout_bytes=positive("FORGE_GRPO_MAX_ROLLOUT_BYTES", d.rollout_bytes),
            control_bytes=positive("FORGE_GRPO_MAX_CONTROL_BYTES", d.control_bytes),
            connections=positive("FORGE_GRPO_MAX_CONNECTIONS", d.connections),
        )


def make_handler(
    session: GrpoSession, base_url: list[str], token: str, admin: str, limits: Limits | None = None
) -> type[BaseHTTPRequestHandler]:
    lim = limits or Limits()
    verifier = RolloutVerifier(session)

    class Handler(BaseHTTPRequestHandler):
        server_version = "forge-grpo"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, **details: Any) -> None:
            self._json(status, {"error": {"message": message, **details}})

        def _authorized(self, expected: str) -> bool:
            """On the headers alone: a refused request's body is never read (its connection is closed instead)."""
            ok = bearer_ok(self.headers.get("Authorization"), expected)
            if not ok:
                self.close_connection = True
                self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token (Authorization: Bearer ...)")
            return ok

        def _body(self, limit: int, setting: str) -> Any:
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError as err:
                self.close_connection = True
                raise UpdateRefused("Content-Length required", status=411) from err
            if length < 0 or length > limit:
                self.close_connection = True
                raise UpdateRefused(f"body of {length} bytes is over {limit} bytes (raise {setting})", status=413)
            raw = self.rfile.read(length)
            try:
                return json.loads(raw) if raw else {}
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise UpdateRefused(f"the body is not valid JSON: {err}", status=400) from err

        def _file(self, path: Path, sha256: str | None) -> None:
            size = path.stat().st_size
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            if sha256:
                self.send_header("X-Forge-Sha256", sha256)
            self.end_headers()
            with path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    self.wfile.write(chunk)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/health":
                v = session.current()
                self._json(
                    HTTPStatus.OK,
                    {
                        "status": "superseded" if session.superseded else "unusable" if session.unusable else "ok",
                        "job_id": session.cfg.job_id,
                        "session_id": session.cfg.session_id,
                        "version": v.number,
                        "sha256": v.sha256,
                    },
                )
                return
            if not self._authorized(token):
                return
            if path == "/v1/policy":
                v = session.current()
                url = f"{base_url[0]}/v1/policy/{v.number}/model.safetensors"
                self._json(HTTPStatus.OK, {"version": v.number, "sha256": v.sha256, "url": url})
                return
            m = WEIGHTS_PATH.match(path)
            if m:
                v = session.weights(int(m.group(1)))
                if v is None or not v.path.exists():
                    self._error(HTTPStatus.NOT_FOUND, f"policy version {m.group(1)} is not kept here")
                else:
                    self._file(v.path, v.sha256)
                return
            m = FINAL_PATH.match(path)
            if m:
                file = session.state_dir / "final" / m.group(1)
                if ".." in m.group(1).split("/") or not file.is_file():
                    self._error(HTTPStatus.NOT_FOUND, f"no exported file {m.group(1)}")
                else:
                    self._file(file, None)
                return
            self._error(HTTPStatus.NOT_FOUND, f"no route GET {path}")

        def do_PUT(self) -> None:
            path = self.path.split("?", 1)[0]
            if not self._authorized(token):
                return
            try:
                m = ROLLOUT_PATH.match(path)
                if not m:
                    self.close_connection = True
                    self._error(HTTPStatus.NOT_FOUND, f"no route PUT {path}")
                    return
                body = self._body(lim.rollout_bytes, "FORGE_GRPO_MAX_ROLLOUT_BYTES")
                r = session.add_rollout(m.group(1), body)
                self._json(HTTPStatus.OK, {"rollout_id": r.rollout_id, "samples": len(r.samples)})
            except UpdateRefused as err:
                self._error(err.status, str(err), **err.details)

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            if not self._authorized(admin):
                return
            try:
                body = self._body(lim.control_bytes, "FORGE_GRPO_MAX_CONTROL_BYTES")
                if path == "/v1/update":
                    result = session.update(UpdateRequest.from_json(body))
                    url = f"{base_url[0]}/v1/policy/{result['version']}/model.safetensors"
                    self._json(HTTPStatus.OK, {**result, "url": url})
                elif path == "/v1/rollout-texts":
                    ids = body.get("rollout_ids") if isinstance(body, dict) else None
                    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                        raise UpdateRefused("rollout_ids must be a list of rollout ids", status=400)
                    self._json(HTTPStatus.OK, {"rollouts": session.rollout_texts(ids)})
                elif path == "/v1/verify-rollouts":
                    self._json(HTTPStatus.OK, verifier.verify(VerifyRequest.from_json(body)))
                elif path == "/v1/checkpoint":
                    saved = session.checkpoint()
                    self._json(HTTPStatus.OK, {"version": session.version, "checkpoint": saved and str(saved)})
                elif path == "/v1/export":
                    files = session.export()
                    url = f"{base_url[0]}/v1/final"
                    self._json(HTTPStatus.OK, {"version": session.version, "files": files, "url": url})
                else:
                    self._error(HTTPStatus.NOT_FOUND, f"no route POST {path}")
            except UpdateRefused as err:
                self._error(err.status, str(err), **err.details)
            except Exception as err:  # a bug must not take the policy down with it: 500, keep serving
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(err).__name__}: {err}")

    return Handler


def serve_grpo(
    config_file: Path,
    state_dir: Path,
    work_dir: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    advertise_host: str | None = None,
) -> None:
    token, admin = _tokens()
    limits = Limits.from_env(os.environ)
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise PermanentError(f"cannot read the grpo config {config_file}: {err}") from err
    cfg = GrpoConfig.from_json(raw)
    events = Events()
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_parent() -> None:  # the host worker died (even by SIGKILL): its pipe to our stdin closes
        try:
            while sys.stdin.buffer.read(1024):
                pass
        except (OSError, ValueError):
            pass
        stop.set()

    if not sys.stdin.isatty():
        threading.Thread(target=watch_parent, daemon=True).start()

    session = GrpoSession(cfg, state_dir, work_dir, events)
    base_url: list[str] = [""]
    httpd = BoundedHTTPServer((host, port), make_handler(session, base_url, token, admin, limits), limits.connections)
    bound_port = int(httpd.server_address[1])
    base_url[0] = f"http://{advertise_host or host}:{bound_port}"
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    v = session.current()
    events.emit(
        "serving",
        url=base_url[0],
        port=bound_port,
        job_id=cfg.job_id,
        session_id=cfg.session_id,
        version=v.number,
        sha256=v.sha256,
        resumed_from=session.st.resumed_from,
        pipeline_depth=cfg.pipeline_depth,
    )
    while not stop.wait(0.5):
        pass
    try:
        saved = session.stop()
        events.emit("stopped", version=session.version, checkpoint=saved and str(saved))
    except UpdateRefused as err:  # superseded or unusable: nothing consistent to checkpoint
        events.emit("stopped", version=session.version, checkpoint=None, reason=str(err))
    httpd.shutdown()
    httpd.server_close()
    shutil.rmtree(work_dir, ignore_errors=True)
    # The stdin watcher is a daemon thread blocked in read(): a normal interpreter shutdown can abort on its buffer
    # lock ("could not acquire lock for <stdin> at interpreter shutdown"). Everything is saved and flushed: leave now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
