"""`forge-trainer eval`: the orchestrator's eval suite run where the model is, as a real process on a tiny model."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from conftest import JOB_ID, contract_env, git, make_repo, make_spec, run_trainer, write_spec
from forge_trainer.evaluate import check_answer

SUITE_DIR = Path(__file__).resolve().parents[2] / "evals"


def suite_b64(*task_types: str) -> str:
    files = {t: (SUITE_DIR / f"{t}.json").read_text(encoding="utf-8") for t in task_types}
    return base64.b64encode(json.dumps(files).encode("utf-8")).decode("ascii")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows_of(output: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (output / "evals.jsonl").read_text(encoding="utf-8").splitlines()]


def eval_spec(model: Path, *task_types: str) -> dict[str, object]:
    spec = make_spec(model, "file:///unused", job_type="eval")
    spec["objective"]["task_types"] = list(task_types)  # type: ignore[index]
    return spec


def test_eval_job_via_run_writes_one_row_per_task(tmp_path: Path, tiny_model: Path) -> None:
    spec = write_spec(tmp_path / "spec.json", eval_spec(tiny_model, "toy", "vcs"))
    out = tmp_path / "out"
    env = contract_env(spec, out, JOB_TYPE="eval", FORGE_EVAL_SUITE_B64=suite_b64("toy", "vcs"))
    run = run_trainer(["run"], env)
    assert run.returncode == 0, run.stderr
    rows = rows_of(out)
    toy = json.loads((SUITE_DIR / "toy.json").read_text())
    vcs = json.loads((SUITE_DIR / "vcs.json").read_text())
    assert [r["task_id"] for r in rows] == [t["id"] for t in toy["tasks"]] + [t["id"] for t in vcs["tasks"]]
    weights = sha256_file(tiny_model / "model.safetensors")
    for r in rows:
        assert r["job_id"] == JOB_ID
        assert r["model_sha256"] == weights
        assert r["suite_sha256"] == sha256_file(SUITE_DIR / f"{r['task_type']}.json")
        assert isinstance(r["success"], bool) and isinstance(r["latency_ms"], int)
        # The verdict is the checker's on the completion: the orchestrator checks it again the same way.
        task = next(t for t in [*toy["tasks"], *vcs["tasks"]] if t["id"] == r["task_id"])
        assert check_answer(task["check"], str(r["completion"]))[0] is r["success"]
    assert run.events("eval")[0]["rows"] == len(rows)


def test_eval_command_with_suite_dir_and_model(tmp_path: Path, tiny_model: Path) -> None:
    spec = write_spec(tmp_path / "spec.json", eval_spec(tiny_model, "toy", "no-such-type"))
    out = tmp_path / "out"
    run = run_trainer(
        [
            "eval",
            "--spec",
            str(spec),
            "--output-dir",
            str(out),
            "--suite-dir",
            str(SUITE_DIR),
            "--model",
            str(tiny_model),
        ]
    )
    assert run.returncode == 0, run.stderr
    # A task type the suite has no file for gets no rows (the orchestrator reports it as "no eval tasks").
    assert {r["task_type"] for r in rows_of(out)} == {"toy"}


def test_committed_model_is_fetched_from_git(tmp_path: Path, tiny_model: Path) -> None:
    files = {f"models/job-x/{p.name}": p.read_bytes() for p in tiny_model.iterdir() if p.is_file()}
    url = make_repo(tmp_path / "out-repo", files, branch="jobs/x")
    commit = git_head(tmp_path / "out-repo")
    # The branch moves on after the commit: the commit itself is evaluated.
    (tmp_path / "out-repo" / "later.txt").write_text("later")
    git(tmp_path / "out-repo", "add", "--all")
    git(tmp_path / "out-repo", "commit", "--quiet", "--message", "later")
    spec = write_spec(tmp_path / "spec.json", make_spec(Path("/nowhere"), "file:///unused"))
    spec_obj = json.loads(spec.read_text())
    spec_obj["objective"]["task_types"] = ["toy"]
    write_spec(spec, spec_obj)
    model = {"kind": "git", "repo": url, "branch": "jobs/x", "commit": commit, "path": "models/job-x"}
    out = tmp_path / "out"
    env = contract_env(
        spec, out, FORGE_TASK="eval", FORGE_EVAL_SUITE_B64=suite_b64("toy"), FORGE_EVAL_MODEL=json.dumps(model)
    )
    run = run_trainer(["run"], env)
    assert run.returncode == 0, run.stderr
    rows = rows_of(out)
    assert rows and all(r["model_sha256"] == sha256_file(tiny_model / "model.safetensors") for r in rows)
    assert rows[0]["model_ref"] == f"git:{url}@{commit}:models/job-x"


def git_head(repo: Path) -> str:
    import subprocess

    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize(
    ("env_extra", "message"),
    [
        ({}, "FORGE_EVAL_SUITE_B64 is not set"),
        ({"FORGE_EVAL_SUITE_B64": "not base64!"}, "FORGE_EVAL_SUITE_B64 is not base64"),
    ],
)
def test_bad_inputs_are_permanent(tmp_path: Path, tiny_model: Path, env_extra: dict[str, str], message: str) -> None:
    spec = write_spec(tmp_path / "spec.json", eval_spec(tiny_model, "toy"))
    run = run_trainer(["run"], contract_env(spec, tmp_path / "out", JOB_TYPE="eval", **env_extra))
    assert run.returncode == 1
    assert message in run.stderr


def test_a_model_without_safetensors_is_refused(tmp_path: Path, tiny_model: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (model / "model.safetensors").unlink()
    spec = write_spec(tmp_path / "spec.json", eval_spec(model, "toy"))
    run = run_trainer(
        ["run"], contract_env(spec, tmp_path / "out", JOB_TYPE="eval", FORGE_EVAL_SUITE_B64=suite_b64("toy"))
    )
    assert run.returncode == 1
    assert "no model.safetensors" in run.stderr


def test_checkers_match_the_orchestrators() -> None:
    assert check_answer({"kind": "exact", "expected": "abc"}, " abc\n") == (True, "exact match")
    assert check_answer({"kind": "regex", "pattern": "^git add (-A|\\.)$"}, "git add .")[0]
    assert not check_answer({"kind": "regex", "pattern": "^A$", "flags": ""}, "a")[0]
    assert check_answer({"kind": "regex", "pattern": "^A$", "flags": "i"}, "a")[0]
    assert check_answer({"kind": "json_field", "field": "a.b", "equals": 1}, 'x {"a": {"b": 1}} y')[0]
    assert not check_answer({"kind": "json_field", "field": "a", "equals": 1}, '{"a": true}')[0]
    edit = {"kind": "edit", "file": "f.py", "before": "x = 1\n", "after": "x = 2\n"}
    assert check_answer(edit, "<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE")[0]
    assert check_answer(edit, "no blocks") == (False, "no SEARCH/REPLACE block in the answer")
