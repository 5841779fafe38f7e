"""Failures and their exit codes: 1 permanent (with a message that says where), 75 transient, fail fast offline."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import contract_env, make_repo, make_spec, reverse_examples, run_trainer, write_spec


def run_with(tmp_path: Path, spec: dict, **env: str):  # noqa: ANN201 - conftest.Run
    return run_trainer(["run"], contract_env(write_spec(tmp_path / "spec.json", spec), tmp_path / "out", **env))


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        (b'{"prompt": "a", "completion": "b"}\n\n{"prompt": "a", "completion": }\n', 3, "not valid JSON"),
        (b'{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n', 2, 'field "completion" is missing'),
        (b'["a", "b"]\n', 1, "expected a JSON object"),
        (b'{"prompt": 1, "completion": "b"}\n', 1, 'field "prompt" must be a string'),
        (b'{"prompt": "a", "completion": "b"}\n{"prompt": "\xff", "completion": "b"}\n', 2, "not UTF-8"),
    ],
)
def test_bad_data_exits_1_naming_file_and_line(
    tmp_path: Path, tiny_model: Path, content: bytes, line: int, problem: str
) -> None:
    files = {"datasets/reverse/a-good.jsonl": reverse_examples(20), "datasets/reverse/b-bad.jsonl": content}
    url = make_repo(tmp_path / "repo", files)
    started = time.monotonic()
    run = run_with(tmp_path, make_spec(tiny_model, url))
    assert run.returncode == 1, run.stderr
    assert f"datasets/reverse/b-bad.jsonl, line {line}: {problem}" in run.stderr
    assert time.monotonic() - started < 20  # found before any model is loaded
    [error] = run.events("error")
    assert error["kind"] == "permanent" and error["exit_code"] == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("hyperparameters__learning_rate", -1, "hyperparameters.learning_rate"),
        ("hyperparameters__learning_rate", 5.0, "hyperparameters.learning_rate"),
        ("hyperparameters__batch_size", 0, "hyperparameters.batch_size"),
        ("hyperparameters__gradient_accumulation_steps", 1.5, "hyperparameters.gradient_accumulation_steps"),
        ("hyperparameters__warmup_steps", -3, "hyperparameters.warmup_steps"),
        ("hyperparameters__weight_decay", "0.1", "hyperparameters.weight_decay"),
        ("data__validation_split", 1.0, "data.validation_split"),
        ("objective__max_steps", 0, "objective.max_steps"),
        ("artifacts__checkpoint_interval_steps", 0, "artifacts.checkpoint_interval_steps"),
    ],
)
def test_bad_hyperparameters_exit_1(tmp_path: Path, tiny_model: Path, field: str, value: object, message: str) -> None:
    run = run_with(tmp_path, make_spec(tiny_model, "file:///nowhere", **{field: value}))
    assert run.returncode == 1
    assert f"bad hyperparameter {message}" in run.stderr


def test_validation_split_that_leaves_no_training_data_exits_1(tmp_path: Path, tiny_model: Path) -> None:
    url = make_repo(tmp_path / "repo", {"datasets/reverse/one.jsonl": reverse_examples(1)})
    run = run_with(tmp_path, make_spec(tiny_model, url, data__validation_split=0.5))
    assert run.returncode == 1
    assert "leaves nothing to train on" in run.stderr


def test_unreachable_data_repo_is_transient(tmp_path: Path, tiny_model: Path) -> None:
    run = run_with(tmp_path, make_spec(tiny_model, (tmp_path / "no-such-repo").as_uri()))
    assert run.returncode == 75, run.stderr
    assert "unreachable" in run.stderr


def test_missing_branch_and_path_are_permanent(tmp_path: Path, tiny_model: Path, data_repo: str) -> None:
    run = run_with(tmp_path, make_spec(tiny_model, data_repo, data__branch="no-such-branch"))
    assert run.returncode == 1
    assert "no branch 'no-such-branch'" in run.stderr
    run = run_with(tmp_path, make_spec(tiny_model, data_repo, data__path="datasets/other/"))
    assert run.returncode == 1
    assert "DATA_PATH 'datasets/other/' does not exist" in run.stderr


def test_unsafe_git_arguments_are_refused(tmp_path: Path, tiny_model: Path) -> None:
    for repo in ("ext::sh -c touch% /tmp/pwned", "--upload-pack=touch /tmp/pwned", "/just/a/path"):
        run = run_with(tmp_path, make_spec(tiny_model, repo))
        assert run.returncode == 1, repo
        assert "is not a git URL" in run.stderr
    run = run_with(tmp_path, make_spec(tiny_model, "file:///x", data__path="../../etc"))
    assert run.returncode == 1
    assert "relative path inside the repository" in run.stderr


def test_missing_local_model_is_permanent(tmp_path: Path, data_repo: str) -> None:
    run = run_with(tmp_path, make_spec(tmp_path / "no-model", data_repo))
    assert run.returncode == 1
    assert "is not a model directory" in run.stderr


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}])
def test_huggingface_source_offline_fails_fast(tmp_path: Path, data_repo: str, env: dict[str, str]) -> None:
    spec = make_spec("chrysalis/no-such-model", data_repo, base_model__source="huggingface")
    started = time.monotonic()
    run = run_with(tmp_path, spec, HF_HOME=str(tmp_path / "hf"), **env)
    assert run.returncode == 1, run.stderr
    assert "chrysalis/no-such-model" in run.stderr and "huggingface" in run.stderr
    assert time.monotonic() - started < 30


def test_unimplemented_job_types_are_permanent(tmp_path: Path, tiny_model: Path) -> None:
    # rl runs on GRPO trainer hosts (grpo-server); eval jobs run `forge-trainer eval` (test_eval.py).
    spec = make_spec(tiny_model, "file:///x", job_type="rl")
    run = run_with(tmp_path, spec, JOB_TYPE="rl")
    assert run.returncode == 1
    assert "not implemented" in run.stderr


def test_unreadable_spec_is_permanent(tmp_path: Path) -> None:
    (tmp_path / "spec.json").write_text("{not json")
    env = contract_env(tmp_path / "spec.json", tmp_path / "out")
    run = run_trainer(["run"], {**env, "JOB_TYPE": "finetune"})
    assert run.returncode == 1
    assert "not valid JSON" in run.stderr
    assert json.loads(run.stdout.splitlines()[-1])["event"] == "error"
