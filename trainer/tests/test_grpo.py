"""grpo-server: the GRPO objective (pure), and the trainer host's policy process as a real subprocess over HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from jsonschema import Draft202012Validator

from conftest import JOB_ID, TRAINER
from forge_trainer.grpo_loss import grpo_loss, lr_multiplier
from forge_trainer.grpo_protocol import STEP_KEYS

TOKEN = "rollout-token-0123456789"  # noqa: S105 - a test token
ADMIN = "admin-token-0123456789ab"
# The host wire as the orchestrator reads it: JSON Schema generated from its zod schemas
# (activities/rl/host/wire-schemas.ts; test/rl/grpo-wire-schema.test.ts keeps the file current).
WIRE_SCHEMA_FILE = Path(__file__).parents[1] / "schemas" / "grpo-wire-v1.schema.json"
WIRE_SCHEMA = json.loads(WIRE_SCHEMA_FILE.read_text(encoding="utf-8"))


def wire(message: str, value: Any) -> None:
    """`value` is the host wire's `message` as the trainer host would parse it (raises ValidationError if not)."""
    Draft202012Validator({**WIRE_SCHEMA, "$ref": f"#/$defs/{message}"}).validate(value)


# ---- the objective ------------------------------------------------------------------------------------------------


def test_on_policy_loss_is_minus_the_advantage_and_kl_vanishes_at_the_reference() -> None:
    lp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, 0.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv = torch.tensor([1.5, -0.5])
    per_sample, stats = grpo_loss(lp, lp.detach(), lp.detach(), adv, mask, clip_epsilon=0.2, kl_beta=0.1)
    assert per_sample.tolist() == pytest.approx([-1.5, 0.5])
    assert float(stats["kl_sum"]) == pytest.approx(0.0)
    assert float(stats["tokens"]) == 5
    # The gradient of an on-policy sample is -A / |o| on each of its tokens (the policy gradient), none on padding.
    per_sample.sum().backward()
    assert lp.grad is not None
    assert lp.grad.flatten().tolist() == pytest.approx([-0.5, -0.5, -0.5, 0.25, 0.25, 0.0])


def test_clipping_stops_the_gradient_beyond_the_trust_region() -> None:
    old = torch.tensor([[-1.0, -1.0]])
    new = torch.tensor([[-1.0 + 0.5, -1.0 + 0.05]], requires_grad=True)  # ratios e^0.5 = 1.65 and e^0.05 = 1.05
    mask = torch.ones(1, 2)
    per_sample, stats = grpo_loss(new, old, new.detach(), torch.tensor([1.0]), mask, clip_epsilon=0.2, kl_beta=0.0)
    per_sample.sum().backward()
    assert new.grad is not None
    assert new.grad[0, 0].item() == 0.0  # clipped at 1.2 with a positive advantage: no push further
    assert new.grad[0, 1].item() < 0.0
    assert float(stats["clipped_sum"]) == 1.0
    assert per_sample.item() == pytest.approx(-(1.2 + torch.exp(torch.tensor(0.05)).item()) / 2)
    # A negative advantage is clipped from below instead: a ratio under 1 - eps stops there.
    new2 = torch.tensor([[-1.0 - 0.5]], requires_grad=True)
    loss2, st2 = grpo_loss(new2, old[:, :1], new2.detach(), torch.tensor([-1.0]), torch.ones(1, 1), 0.2, 0.0)
    loss2.sum().backward()
    assert new2.grad is not None
    assert new2.grad.item() == 0.0
    assert float(st2["clipped_sum"]) == 1.0


def test_k3_kl_is_non_negative_and_grows_with_the_gap() -> None:
    ref = torch.zeros(1, 4)
    new = torch.tensor([[0.0, -0.1, -0.5, -2.0]])
    mask = torch.ones(1, 4)
    _, stats = grpo_loss(new, new, ref, torch.zeros(1), mask, 0.2, 1.0)
    gaps = (ref - new)[0]
    k3 = torch.exp(gaps) - gaps - 1
    assert float(stats["kl_sum"]) == pytest.approx(float(k3.sum()))
    assert all(a <= b for a, b in zip(k3.tolist(), k3.tolist()[1:], strict=False))
    assert k3.min().item() >= 0.0


def test_lr_warmup_then_constant() -> None:
    assert [lr_multiplier(t, 4) for t in (1, 2, 4, 5, 100)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert lr_multiplier(1, 0) == 1.0


# ---- the server ---------------------------------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    serving: dict[str, Any]

    def call(self, method: str, path: str, body: Any = None, token: str | None = TOKEN) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                raw = resp.read()
                return resp.status, raw if resp.headers.get("Content-Type") != "application/json" else json.loads(raw)
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def stop(self) -> list[dict[str, Any]]:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def write_config(path: Path, model: Path, session: str, **over: Any) -> Path:
    cfg = {
        "job_id": JOB_ID,
        "session_id": session,
        "base_model": {"name": str(model), "source": "local", "revision": "main"},
        "learning_rate": 3e-3,
        "weight_decay": 0.0,
        "warmup_steps": 0,
        "clip_epsilon": 0.2,
        "kl_beta": 0.04,
        "max_off_policy_steps": 1,
        "checkpoint_interval_steps": 2,
        "max_steps": 10,
        "seed": 7,
        "keep_versions": 3,
        "pipeline_wait_seconds": 0.5,
        **over,
    }
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path


def start(config: Path, state: Path, work: Path) -> Server:
    env = {**os.environ, "FORGE_GRPO_TOKEN": TOKEN, "FORGE_GRPO_ADMIN_TOKEN": ADMIN}
    args = ["grpo-server", "--config", str(config), "--state-dir", str(state), "--work-dir", str(work)]
    proc = subprocess.Popen(
        [*TRAINER, *args], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "serving":
            return Server(proc, event["url"], event)
    raise AssertionError(proc.stderr.read() if proc.stderr else "no serving event")


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def rollout(version: int, rewards: list[float], seed: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    samples = []
    for r in rewards:
        ids = torch.randint(97, 105, (4,), generator=g).tolist()
        samples.append({"token_ids": ids, "logprobs": [-5.5] * len(ids), "reward": r})
    return {"policy_version": version, "prompt": "reverse abc:", "samples": samples}


def advantages(rewards: list[float]) -> list[float]:
    m = sum(rewards) / len(rewards)
    sd = (sum((r - m) ** 2 for r in rewards) / (len(rewards) - 1)) ** 0.5
    return [(r - m) / sd for r in rewards]


def test_updates_versions_weights_checkpoints_resume_and_export(
    tiny_model: Path, tmp_path: Path, servers: list[Server]
) -> None:
    state = tmp_path / "state"
    a = start(write_config(tmp_path / "a.json", tiny_model, "session-a"), state, tmp_path / "work-a")
    servers.append(a)
    assert a.serving["version"] == 0 and a.serving["resumed_from"] is None
    assert a.serving["pipeline_depth"] == 2  # what the orchestrator may send at once (the lease carries it)
    wire("serving", a.serving)
    assert a.call("GET", "/health", token=None)[1]["version"] == 0

    # Tokens: weights and uploads need the rollout token, updates the admin token.
    assert a.call("GET", "/v1/policy", token=None)[0] == 401
    assert a.call("POST", "/v1/update", {"step": 1, "groups": []}, token=TOKEN)[0] == 401
    status, policy = a.call("GET", "/v1/policy")
    assert status == 200 and policy["version"] == 0
    status, weights = a.call("GET", "/v1/policy/0/model.safetensors")
    assert status == 200 and hashlib.sha256(weights).hexdigest() == policy["sha256"]

    rewards = [1.0, 0.0, 0.5, 0.0]
    assert a.call("PUT", "/v1/rollouts/r1", rollout(0, rewards, 1))[0] == 200
    # An id is taken once: a second upload under it is refused and does not replace the first.
    status, dup = a.call("PUT", "/v1/rollouts/r1", rollout(0, [0.0] * len(rewards), 9))
    assert status == 409 and dup["error"]["duplicate"] is True
    assert a.call("PUT", "/v1/rollouts/bad", {"policy_version": 0, "prompt": "x", "samples": [{}]})[0] == 400
    assert a.call("PUT", "/v1/rollouts/future", rollout(5, rewards, 1))[0] == 409
    # Steps come in order; unknown rollouts are named.
    g1 = [{"rollout_id": "r1", "advantages": advantages(rewards)}]
    assert a.call("POST", "/v1/update", {"step": 2, "groups": g1}, ADMIN)[0] == 409
    nope = [{"rollout_id": "nope", "advantages": [0.0]}]
    status, missing = a.call("POST", "/v1/update", {"step": 1, "groups": nope}, ADMIN)
    assert status == 409 and missing["error"]["missing"] == ["nope"]
    wire("error", missing)

    body = {"step": 1, "groups": g1, "rollout_tokens_per_s": 12.5}
    wire("updateRequest", body)
    status, step1 = a.call("POST", "/v1/update", body, ADMIN)
    assert status == 200, step1
    wire("step", step1)
    assert step1["version"] == 1 and step1["sha256"] != policy["sha256"]
    assert set(STEP_KEYS) <= set(step1)
    assert step1["reward_mean"] == pytest.approx(0.375) and step1["staleness_max"] == 0
    assert step1["rollout_tokens_per_s"] == 12.5 and 0 <= step1["trainer_idle_fraction"] <= 1
    assert step1["url"].endswith("/v1/policy/1/model.safetensors")
    # A retried update (its answer lost) gets the same answer, nothing applied twice.
    assert a.call("POST", "/v1/update", body, ADMIN) == (200, step1)
    status, w1 = a.call("GET", "/v1/policy/1/model.safetensors")
    assert hashlib.sha256(w1).hexdigest() == step1["sha256"]

    # Staleness bound (max_off_policy_steps 1): a version-0 rollout is usable at version 1, not at version 2.
    assert a.call("PUT", "/v1/rollouts/r2", rollout(0, rewards, 2))[0] == 200
    assert a.call("PUT", "/v1/rollouts/r3", rollout(1, rewards, 3))[0] == 200
    g2 = {"step": 2, "groups": [{"rollout_id": "r2", "advantages": advantages(rewards)}]}
    status, step2 = a.call("POST", "/v1/update", g2, ADMIN)
    assert status == 200 and step2["staleness_max"] == 1 and step2["checkpoint"]  # interval 2
    wire("step", step2)
    status, texts = a.call("POST", "/v1/rollout-texts", {"rollout_ids": ["r3"]}, ADMIN)  # not yet used by a step
    assert status == 200 and set(texts["rollouts"]) == {"r3"}
    wire("rolloutTexts", texts)
    status, verified = a.call("POST", "/v1/verify-rollouts", {"rollout_ids": [], "refused_workers": []}, ADMIN)
    assert status == 200
    wire("verifyAnswer", verified)
    assert a.call("PUT", "/v1/rollouts/r4", rollout(0, rewards, 4))[0] == 200
    g3 = {"step": 3, "groups": [{"rollout_id": "r4", "advantages": advantages(rewards)}]}
    status, stale = a.call("POST", "/v1/update", g3, ADMIN)
    assert status == 409 and "max_off_policy_steps is 1" in stale["error"]["message"]
    g3 = {"step": 3, "groups": [{"rollout_id": "r3", "advantages": advantages(rewards)}]}
    assert a.call("POST", "/v1/update", g3, ADMIN)[0] == 200
    # Old versions are dropped (keep_versions 3).
    assert a.call("GET", "/v1/policy/0/model.safetensors")[0] == 404

    # SIGTERM: a checkpoint of version 3 (newer than the one at 2), exit 0.
    events = a.stop()
    assert {"event": "checkpoint", "step": 3} in [{k: e[k] for k in ("event", "step") if k in e} for e in events]
    log = (state / "training_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log] == [1, 2, 3]

    # Another session resumes from version 3 and owns the job; its log keeps steps 1-3.
    b = start(write_config(tmp_path / "b.json", tiny_model, "session-b"), state, tmp_path / "work-b")
    servers.append(b)
    assert b.serving["resumed_from"] == 3 and b.serving["version"] == 3
    assert json.loads((state / "owner.json").read_text())["session_id"] == "session-b"
    status, exported = b.call("POST", "/v1/export", {}, ADMIN)
    assert status == 200
    wire("export", exported)
    names = {f["path"] for f in exported["files"]}
    assert {"model.safetensors", "config.json", "training_log.jsonl", "metrics.json"} <= names
    metrics = json.loads((state / "final" / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["resumed_from"] == 3 and metrics["staleness_max"] == 1
    f = next(f for f in exported["files"] if f["path"] == "model.safetensors")
    status, blob = b.call("GET", "/v1/final/model.safetensors")
    assert status == 200 and hashlib.sha256(blob).hexdigest() == f["sha256"]
    assert b.call("GET", "/v1/final/../owner.json")[0] == 404
    b.stop()


def test_a_superseded_session_stops_writing_and_exits_when_its_host_dies(
    tiny_model: Path, tmp_path: Path, servers: list[Server]
) -> None:
    state = tmp_path / "state"
    old_config = write_config(tmp_path / "a.json", tiny_model, "old", checkpoint_interval_steps=1)
    old = start(old_config, state, tmp_path / "wa")
    servers.append(old)
    new = start(write_config(tmp_path / "b.json", tiny_model, "new"), state, tmp_path / "wb")
    servers.append(new)
    assert old.call("PUT", "/v1/rollouts/r", rollout(0, [1.0, 0.0], 1))[0] == 200
    update = {"step": 1, "groups": [{"rollout_id": "r", "advantages": [1.0, -1.0]}]}
    status, body = old.call("POST", "/v1/update", update, ADMIN)
    assert status == 410 and body["error"]["owner"] == "new"
    assert old.call("GET", "/health", token=None)[1]["status"] == "superseded"
    # Its host worker dies (the pipe to its stdin closes): it exits 0 without touching the successor's state.
    assert old.proc.stdin is not None
    old.proc.stdin.close()
    assert old.proc.wait(timeout=60) == 0
    assert not (state / "checkpoints").exists()
    assert json.loads((state / "owner.json").read_text())["session_id"] == "new"
    new.stop()


def test_checkpoints_hold_the_sessions_own_log_and_a_stopped_session_takes_no_update(
    tiny_model: Path, tmp_path: Path
) -> None:
    """The recovery race seen in CI: a predecessor still finishing an update rewrote the shared training_log.jsonl
    while this session checkpointed, and the successor resumed from a checkpoint whose log lacked its own step."""
    import io

    from forge_trainer.contract import Events
    from forge_trainer.grpo import GrpoSession
    from forge_trainer.grpo_protocol import GrpoConfig, UpdateRefused, UpdateRequest

    state = tmp_path / "state"
    raw = json.loads(write_config(tmp_path / "a.json", tiny_model, "a", checkpoint_interval_steps=100).read_text())
    a = GrpoSession(GrpoConfig.from_json(raw), state, tmp_path / "wa", Events(out=io.StringIO()))
    rewards = [1.0, 0.0, 0.5, 0.0]
    for step in (1, 2):
        a.add_rollout(f"r{step}", rollout(step - 1, rewards, step))
        a.update(
            UpdateRequest.from_json(
                {"step": step, "groups": [{"rollout_id": f"r{step}", "advantages": advantages(rewards)}]}
            )
        )
    (state / "training_log.jsonl").write_text("", encoding="utf-8")  # another process's write
    saved = a.stop()
    assert saved is not None
    assert [json.loads(line)["step"] for line in (saved / "training_log.jsonl").read_text().splitlines()] == [1, 2]
    # An update that waited for the lock while the session stopped is refused: the policy stays at the checkpoint.
    a.add_rollout("r3", rollout(2, rewards, 3))
    with pytest.raises(UpdateRefused) as refused:
        a.update(
            UpdateRequest.from_json({"step": 3, "groups": [{"rollout_id": "r3", "advantages": advantages(rewards)}]})
        )
    assert refused.value.status == 410 and a.version == 2

    # The successor resumes at 2 with both lines, and its export holds them whatever the shared file says.
    raw_b = {**raw, "session_id": "b"}
    b = GrpoSession(GrpoConfig.from_json(raw_b), state, tmp_path / "wb", Events(out=io.StringIO()))
    assert b.st.resumed_from == 2
    (state / "training_log.jsonl").write_text('{"event": "step", "step": 9}\n', encoding="utf-8")
    b.export()
    final = (state / "final" / "training_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in final] == [1, 2]


def test_a_dead_event_reader_does_not_break_a_step_and_a_step_failing_after_its_update_poisons_the_session(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI saw a killed host's policy process checkpoint version 6 without step 6's log line: writing the "policy"
    event to the dead host's pipe raised between the version change and the log line, and the stop then saved it."""
    import io

    from forge_trainer.contract import Events
    from forge_trainer.grpo import GrpoSession
    from forge_trainer.grpo_protocol import GrpoConfig, UpdateRefused, UpdateRequest

    read_end, write_end = os.pipe()
    os.close(read_end)  # the host died: nobody reads the events
    dead = os.fdopen(write_end, "w")
    state = tmp_path / "state"
    raw = json.loads(write_config(tmp_path / "a.json", tiny_model, "a", checkpoint_interval_steps=2).read_text())
    a = GrpoSession(GrpoConfig.from_json(raw), state, tmp_path / "wa", Events(out=io.StringIO()))
    a.events = Events(out=dead)
    rewards = [1.0, 0.0, 0.5, 0.0]

    def update(session: GrpoSession, n: int) -> dict[str, Any]:
        groups = [{"rollout_id": f"r{n}", "advantages": advantages(rewards)}]
        return session.update(UpdateRequest.from_json({"step": n, "groups": groups}))

    def step(session: GrpoSession, n: int) -> dict[str, Any]:
        session.add_rollout(f"r{n}", rollout(n - 1, rewards, n))
        return update(session, n)

    assert step(a, 1)["version"] == 1
    assert step(a, 2)["checkpoint"]  # interval 2: the checkpoint holds step 2's line
    saved = state / "checkpoints" / "step-00000002" / "training_log.jsonl"
    assert [json.loads(line)["step"] for line in saved.read_text().splitlines()] == [1, 2]

    def disk_full(number: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(a, "_publish", disk_full)
    with pytest.raises(OSError, match="No space"):
        step(a, 3)
    # The weights moved past version 2 with no line for step 3: nothing more from this session, no checkpoint of it.
    for call in (lambda: update(a, 3), a.stop, a.export):  # the retried update (its rollout is uploaded already)
        with pytest.raises(UpdateRefused) as refused:
            call()
        assert refused.value.status == 410
    assert sorted(p.name for p in (state / "checkpoints").glob("step-*")) == ["step-00000002"]


def test_a_pipelined_update_waits_for_the_step_before_it(tiny_model: Path, tmp_path: Path) -> None:
    """The orchestrator sends step n + 1 while step n runs (the trainer then never waits a round trip between steps);
    the two requests may cross. Step n + 1 waits for its turn, and only as long as step n can still come."""
    import io
    import threading

    from forge_trainer.contract import Events
    from forge_trainer.grpo import GrpoSession
    from forge_trainer.grpo_protocol import GrpoConfig, UpdateRefused, UpdateRequest

    raw = json.loads(write_config(tmp_path / "a.json", tiny_model, "a", pipeline_wait_seconds=30).read_text())
    a = GrpoSession(GrpoConfig.from_json(raw), tmp_path / "state", tmp_path / "wa", Events(out=io.StringIO()))
    rewards = [1.0, 0.0, 0.5, 0.0]

    def request(n: int, rid: str | None = None) -> UpdateRequest:
        groups = [{"rollout_id": rid or f"r{n}", "advantages": advantages(rewards)}]
        return UpdateRequest.from_json({"step": n, "groups": groups})

    def in_thread(req: UpdateRequest) -> tuple[threading.Thread, list[Any]]:
        out: list[Any] = []

        def run() -> None:
            try:
                out.append(a.update(req))
            except UpdateRefused as err:
                out.append(err)

        t = threading.Thread(target=run)
        t.start()
        return t, out

    a.add_rollout("r1", rollout(0, rewards, 1))
    a.cfg = GrpoConfig.from_json({**raw, "min_update_seconds": 2})  # steps 1 and 2 take 2 s each
    # Step 2 arrives first and waits; step 1 then runs, and step 2 right after it, on version 1.
    t2, out2 = in_thread(request(2))
    time.sleep(0.3)
    assert t2.is_alive() and a.version == 0
    t1, out1 = in_thread(request(1))
    time.sleep(0.3)
    # Step 2's rollout is uploaded while step 1 updates: at once, not after the update (uploads never wait for it).
    began = time.monotonic()
    a.add_rollout("r2", rollout(0, rewards, 2))
    assert time.monotonic() - began < 1 and t1.is_alive()
    t1.join(timeout=60)
    t2.join(timeout=60)
    step1 = out1[0]
    assert step1["version"] == 1 and out2[0]["version"] == 2 and out2[0]["staleness_max"] == 1
    assert out2[0]["trainer_idle_fraction"] < 0.05  # it started as soon as step 1 ended
    a.cfg = GrpoConfig.from_json(raw)
    # A retried step 1 whose answer was lost, after step 2 applied: the same answer, nothing applied twice.
    assert a.update(request(1)) == step1 and a.version == 2

    # Step 3 fails before its weight update (a rollout never uploaded): step 4, waiting for it, is refused, not stuck.
    a.add_rollout("r4", rollout(2, rewards, 4))
    a.cfg = GrpoConfig.from_json({**raw, "pipeline_wait_seconds": 1})  # read when the waiter starts waiting
    t4, out4 = in_thread(request(4))
    time.sleep(0.3)
    with pytest.raises(UpdateRefused) as missing:
        a.update(request(3, "never-uploaded"))
    assert missing.value.status == 409
    t4.join(timeout=60)
    assert isinstance(out4[0], UpdateRefused) and out4[0].status == 409 and a.version == 2

    # A session that stops wakes a waiting step at once: refused 410, the policy stays at its checkpoint.
    a.cfg = GrpoConfig.from_json(raw)
    t4, out4 = in_thread(request(4))
    time.sleep(0.3)
    started = time.monotonic()
    a.stop()
    t4.join(timeout=60)
    assert time.monotonic() - started < 10
    assert isinstance(out4[0], UpdateRefused) and out4[0].status == 410 and a.version == 2


def test_serve_loads_new_weights_when_allowed(tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    model.save_pretrained(tmp_path / "v1")
    proc = subprocess.Popen(
        [*TRAINER, "serve", "--model", str(tiny_model), "--port", "0", "--allow-weight-updates"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        srv = Server(proc, json.loads(proc.stdout.readline())["url"], {})
        assert srv.call("GET", "/health")[1]["weight_version"] == "base"
        body = {"model_path": str(tmp_path / "v1"), "weight_version": "1:abc"}
        status, answer = srv.call("POST", "/update_weights_from_disk", body)
        assert status == 200 and answer["success"] is True
        assert srv.call("GET", "/health")[1]["weight_version"] == "1:abc"
        status, answer = srv.call("POST", "/update_weights_from_disk", {"model_path": str(tmp_path / "nothing")})
        assert status == 400 and answer["success"] is False
        status, _ = srv.call("POST", "/v1/completions", {"prompt": "reverse abc:", "max_tokens": 3, "seed": 1})
        assert status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_weight_updates_are_off_by_default() -> None:
    import threading
    from http.server import ThreadingHTTPServer

    from forge_trainer.serve import make_handler

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(None, allow_weight_updates=False))  # type: ignore[arg-type]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        srv = Server(None, f"http://127.0.0.1:{httpd.server_address[1]}", {})  # type: ignore[arg-type]
        assert srv.call("POST", "/update_weights_from_disk", {"model_path": "/etc"})[0] == 404
    finally:
        httpd.shutdown()
        httpd.server_close()
