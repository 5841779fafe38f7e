"""A run stopped by SIGTERM saves a checkpoint and exits 75; run again on the same output it continues from there."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from conftest import TRAINER, Trained, contract_env, make_spec, run_trainer, write_spec


def test_sigterm_checkpoints_and_the_next_run_resumes(
    tmp_path: Path, tiny_model: Path, data_repo: str, trained: Trained, popen_cleanup: list[subprocess.Popen[str]]
) -> None:
    spec = make_spec(tiny_model, data_repo, artifacts__checkpoint_interval_steps=10)
    env = contract_env(write_spec(tmp_path / "spec.json", spec), tmp_path / "out")
    proc = subprocess.Popen([*TRAINER, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    popen_cleanup.append(proc)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # the first checkpoint (step 10) is written: stop the run
        lines.append(line)
        if json.loads(line)["event"] == "checkpoint":
            proc.send_signal(signal.SIGTERM)
            break
    rest, stderr = proc.communicate(timeout=60)
    lines.extend(rest.splitlines())
    assert proc.returncode == 75, stderr
    assert "interrupted by SIGTERM" in stderr and "checkpoint" in stderr
    saved = [json.loads(line)["step"] for line in lines if '"event":"checkpoint"' in line]
    stopped_at = saved[-1]
    assert 10 <= stopped_at < 60

    resumed = run_trainer(["run"], {**env, "FORGE_ATTEMPT": "2"})
    assert resumed.returncode == 0, resumed.stderr
    [resume] = resumed.events("resume")
    assert resume["from_step"] == stopped_at and resume["same_data"] is True
    assert resumed.events("progress")[0]["step"] == stopped_at + 1  # not 1: no work is redone

    out = tmp_path / "out"
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["event"] == "progress"] == list(range(1, 61))
    assert [r["from_step"] for r in log if r["event"] == "resume"] == [stopped_at]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == stopped_at
    assert metrics["steps_this_attempt"] == 60 - stopped_at
    # Stopping and resuming changes nothing: same losses as the run that never stopped.
    assert metrics["val_loss"] == trained.metrics["val_loss"]
    assert metrics["train_loss"] == trained.metrics["train_loss"]


def test_sigterm_without_checkpoints_is_transient_and_says_it_starts_over(
    tmp_path: Path, tiny_model: Path, data_repo: str, popen_cleanup: list[subprocess.Popen[str]]
) -> None:
    spec = make_spec(tiny_model, data_repo, artifacts__save_checkpoints=False, objective__max_steps=100_000)
    env = contract_env(write_spec(tmp_path / "spec.json", spec), tmp_path / "out")
    proc = subprocess.Popen([*TRAINER, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    popen_cleanup.append(proc)
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line)["event"] == "progress":
            proc.send_signal(signal.SIGTERM)
            break
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 75, stderr
    assert "starts over" in stderr
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_checkpoints_of_another_job_or_run_are_not_resumed(tmp_path: Path) -> None:
    from forge_trainer.checkpoint import CHECKPOINTS, STATE_FILE, checkpoint_name
    from forge_trainer.contract import Events
    from forge_trainer.finetune import _resume_point
    from forge_trainer.spec import finetune_job

    spec = make_spec("/m", "file:///r")
    job = finetune_job(spec, {})

    def checkpoint(step: int, **state: object) -> None:
        path = tmp_path / CHECKPOINTS / checkpoint_name(step)
        path.mkdir(parents=True)
        (path / STATE_FILE).write_text(json.dumps({"job_id": job.job_id, "max_steps": 60, "step": step, **state}))

    checkpoint(10)
    checkpoint(30, job_id="11111111-2222-4333-8444-555555555555")  # another job's
    checkpoint(40, max_steps=1000)  # another run of this job (different schedule)
    (tmp_path / CHECKPOINTS / checkpoint_name(50)).mkdir()  # incomplete: no state file
    log = tmp_path / "events.log"
    with log.open("w") as f:
        found = _resume_point(tmp_path, job, Events(out=f))
    assert found is not None
    assert found.step == 10
    assert log.read_text().count("ignoring checkpoint") == 2
