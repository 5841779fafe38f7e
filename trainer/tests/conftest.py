"""Shared fixtures: the trainer as a real subprocess, a tiny base model, data in real git repositories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TRAINER = [sys.executable, "-m", "forge_trainer"]
# One thread per trainer: tiny models gain nothing from more, and on a shared 2-core CI box a second OpenMP thread
# that gets descheduled makes every step wait for it (steps 50x slower under load).
os.environ["OMP_NUM_THREADS"] = "1"
JOB_ID = "0f8e4a52-3c1d-4b6e-9a7f-2d5c8b1e6f30"
GIT_ID = {
    "GIT_AUTHOR_NAME": "forge-test",
    "GIT_AUTHOR_EMAIL": "forge-test@example.invalid",
    "GIT_COMMITTER_NAME": "forge-test",
    "GIT_COMMITTER_EMAIL": "forge-test@example.invalid",
}


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env={**os.environ, **GIT_ID})


def make_repo(root: Path, files: Mapping[str, str | bytes], branch: str = "main") -> str:
    """A git repository at `root` with `files` committed on `branch`; returns its file:// URL."""
    root.mkdir(parents=True)
    git(root, "init", "--quiet", "--initial-branch", branch)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    git(root, "add", "--all")
    git(root, "commit", "--quiet", "--message", "data")
    return root.resolve().as_uri()


def reverse_examples(count: int, seed: int = 0) -> str:
    """JSONL of a small learnable task: reverse a short word."""
    import random

    r = random.Random(seed)
    lines = []
    for _ in range(count):
        word = "".join(r.choice("abcdefgh") for _ in range(r.randint(3, 8)))
        lines.append(json.dumps({"prompt": f"reverse {word}:", "completion": f" {word[::-1]}"}))
    return "\n".join(lines) + "\n"


def make_spec(model: Path | str, repo: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "job_id": JOB_ID,
        "job_type": "finetune",
        "base_model": {"name": str(model), "source": "local", "revision": "main"},
        "objective": {"optimize_for": "loss", "task_types": ["reverse"], "target_metric": 0.9, "max_steps": 60},
        "data": {
            "source": "git",
            "repo": repo,
            "branch": "main",
            "path": "datasets/reverse/",
            "format": "jsonl",
            "validation_split": 0.1,
        },
        "hyperparameters": {
            "learning_rate": 3e-3,
            "batch_size": 8,
            "gradient_accumulation_steps": 2,
            "warmup_steps": 5,
            "weight_decay": 0.01,
        },
        "artifacts": {"save_checkpoints": True, "checkpoint_interval_steps": 20},
    }
    for dotted, value in overrides.items():
        node = spec
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return spec


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        rows = [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]
        return [r for r in rows if name is None or r["event"] == name]


def contract_env(spec_file: Path, output: Path, attempt: int = 1, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "JOB_", "DATA_", "MODEL"))}
    return {
        **env,
        "JOB_TYPE": "finetune",
        "FORGE_SPEC": str(spec_file),
        "FORGE_OUTPUT_DIR": str(output),
        "FORGE_ATTEMPT": str(attempt),
        **extra,
    }


def run_trainer(args: list[str], env: Mapping[str, str] | None = None, timeout: float = 120) -> Run:
    done = subprocess.run(
        [*TRAINER, *args], env=dict(env or os.environ), capture_output=True, text=True, timeout=timeout, check=False
    )
    return Run(done.returncode, done.stdout, done.stderr)


def write_spec(path: Path, spec: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "model"
    run = run_trainer(["init-tiny", "--out", str(out)])
    assert run.returncode == 0, run.stderr
    return out


@pytest.fixture(scope="session")
def data_repo(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("data") / "repo"
    return make_repo(root, {"datasets/reverse/train.jsonl": reverse_examples(200), "README.md": "test data\n"})


@dataclass
class Trained:
    output: Path
    run: Run
    spec: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any]:
        return json.loads((self.output / "metrics.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, data_repo: str) -> Trained:
    """One uninterrupted finetune through the contract entrypoint, shared by the tests that inspect its results."""
    work = tmp_path_factory.mktemp("trained")
    spec = make_spec(tiny_model, data_repo)
    output = work / "output"
    run = run_trainer(["run"], contract_env(write_spec(work / "spec.json", spec), output))
    assert run.returncode == 0, run.stderr
    return Trained(output, run, spec)


@pytest.fixture
def popen_cleanup() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
