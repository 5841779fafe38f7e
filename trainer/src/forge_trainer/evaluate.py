"""
`forge-trainer eval`: runs the orchestrator's eval suite where the model is (README "Evaluation on the backends").

Inputs, shipped like every other input of the trainer contract:
  FORGE_SPEC           the job's spec (job_id, base_model, objective.task_types)
  FORGE_OUTPUT_DIR     where `evals.jsonl` is written (one row per task, the orchestrator's row format)
  FORGE_EVAL_SUITE_B64 base64 of a JSON object {task_type: task file text}: the exact files the orchestrator uses
  FORGE_EVAL_MODEL     optional JSON {"kind": "git", repo, branch, commit, path}: a committed model (a finetune's
                       EVALUATING step); without it the spec's base model is evaluated (an eval job)

Each row carries the job id and the sha256 of the evaluated model.safetensors: the orchestrator refuses rows for
another job or another model, and checks each verdict again from the completion (activities/backend-evals.ts).
The checkers mirror activities/eval-suite.ts: same answer, same verdict.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from forge_trainer.contract import Events, PermanentError, TransientError, dumps

ROWS_FILE = "evals.jsonl"
COMPLETION_CHARS = 500
_TASK_TYPE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_BLOCK = re.compile(r"<<<<<<< SEARCH\n([\s\S]*?)\n?=======\n([\s\S]*?)\n?>>>>>>> REPLACE")


@dataclass(frozen=True)
class Suite:
    task_type: str
    sha256: str
    tasks: list[dict[str, Any]]


def decode_suite(b64: str) -> dict[str, Suite]:
    """FORGE_EVAL_SUITE_B64 → suites by task type; the sha256 is of each file's text, as the orchestrator hashes it."""
    try:
        files = json.loads(base64.b64decode(b64, validate=True).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PermanentError(f"FORGE_EVAL_SUITE_B64 is not base64 of a JSON object: {err}") from err
    if not isinstance(files, dict):
        raise PermanentError("FORGE_EVAL_SUITE_B64 must hold a JSON object {task_type: task file text}")
    suites: dict[str, Suite] = {}
    for task_type, text in files.items():
        if not isinstance(text, str) or not _TASK_TYPE.match(task_type):
            raise PermanentError(f"FORGE_EVAL_SUITE_B64: bad entry {task_type!r}")
        try:
            suite = json.loads(text)
        except json.JSONDecodeError as err:
            raise PermanentError(f"eval suite {task_type}: not JSON ({err})") from err
        tasks = suite.get("tasks") if isinstance(suite, dict) else None
        if not isinstance(tasks, list) or suite.get("task_type") != task_type:
            raise PermanentError(f"eval suite {task_type}: needs task_type {task_type!r} and a tasks list")
        suites[task_type] = Suite(task_type, hashlib.sha256(text.encode("utf-8")).hexdigest(), tasks)
    return suites


def render_prompt(task: Mapping[str, Any]) -> str:
    check = task["check"]
    prompt = str(task["prompt"])
    if check.get("kind") != "edit":
        return prompt
    return prompt.replace("{{file}}", check["file"]).replace("{{before}}", check["before"])


def apply_edit_blocks(before: str, answer: str) -> tuple[bool, str]:
    blocks = _BLOCK.findall(answer)
    if not blocks:
        return False, "no SEARCH/REPLACE block in the answer"
    text = before
    for i, (search, replace) in enumerate(blocks, start=1):
        at = text.find(search)
        if search == "" or at < 0:
            return False, f"block {i}: SEARCH text not found in the file"
        if text.find(search, at + 1) >= 0:
            return False, f"block {i}: SEARCH text occurs more than once"
        text = text[:at] + replace + text[at + len(search) :]
    return True, text


def _short(s: str) -> str:
    return json.dumps(s if len(s) <= 60 else f"{s[:57]}...", ensure_ascii=False)


def _json_object_in(answer: str) -> Any:
    start, end = answer.find("{"), answer.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        return json.loads(answer[start : end + 1])
    except json.JSONDecodeError:
        return None


def _field_of(value: Any, dotted: str) -> tuple[bool, Any]:
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return False, None
        value = value[key]
    return True, value


def check_answer(check: Mapping[str, Any], answer: str) -> tuple[bool, str]:
    """(success, detail) — the verdicts of activities/eval-suite.ts checkAnswer."""
    trimmed = answer.strip()
    kind = check.get("kind")
    if kind == "exact":
        expected = str(check["expected"])
        if trimmed == expected:
            return True, "exact match"
        return False, f"expected {_short(expected)}, got {_short(trimmed)}"
    if kind == "regex":
        flags = 0
        for f in str(check.get("flags", "")):
            flags |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "u": 0}[f]
        if re.search(str(check["pattern"]), trimmed, flags):
            return True, "matches"
        return False, f"{_short(trimmed)} does not match /{check['pattern']}/{check.get('flags', '')}"
    if kind == "json_field":
        obj = _json_object_in(trimmed)
        if obj is None:
            return False, "no JSON object in the answer"
        found, got = _field_of(obj, str(check["field"]))
        if found and got == check["equals"] and isinstance(got, bool) == isinstance(check["equals"], bool):
            return True, f"{check['field']} = {json.dumps(got)}"
        shown = json.dumps(got) if found else "missing"
        return False, f"{check['field']} is {shown}, expected {json.dumps(check['equals'])}"
    if kind == "edit":
        ok, after = apply_edit_blocks(str(check["before"]), answer)
        if not ok:
            return False, after
        if after == check["after"]:
            return True, f"{check['file']} as expected"
        return False, f"{check['file']} differs from the expected result"
    raise PermanentError(f"unknown check kind {kind!r}")


def model_sha256(model_dir: Path) -> str:
    """sha256 of the model's weights file (model.safetensors): what the rows name the model by."""
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise PermanentError(f"{model_dir} has no model.safetensors: the eval rows must name the model by its hash")
    h = hashlib.sha256()
    with weights.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_committed_model(ref: Mapping[str, Any], dest: Path, timeout_s: float) -> Path:
    """A model committed by the orchestrator: its branch fetched, the commit's folder checked out."""
    from forge_trainer.data import check_git_args, clone

    repo, branch, commit, folder = (str(ref.get(k, "")) for k in ("repo", "branch", "commit", "path"))
    check_git_args(repo, branch, folder)
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise PermanentError(f"FORGE_EVAL_MODEL.commit must be a 40-hex commit id, got {commit!r}")
    clone(repo, branch, dest, timeout_s)
    # The branch may have moved on since the commit (another job's results): check the commit out itself.
    done = subprocess.run(
        ["git", "-C", str(dest), "fetch", "--quiet", "--depth", "1", "origin", commit],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    head = subprocess.run(["git", "-C", str(dest), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    if head.stdout.strip() != commit:
        if done.returncode != 0:
            raise TransientError(f"cannot fetch commit {commit} of {repo}: {' '.join(done.stderr.split())[-300:]}")
        subprocess.run(["git", "-C", str(dest), "checkout", "--quiet", commit], check=True, timeout=timeout_s)
    model = dest / folder
    if not (model / "config.json").is_file():
        raise PermanentError(f"{repo}@{commit}:{folder} is not a model directory with a config.json")
    return model


def resolve_model(spec: Mapping[str, Any], env: Mapping[str, str], given: Path | None, work: Path) -> tuple[Path, str]:
    """(model directory, model_ref): --model, FORGE_EVAL_MODEL (a committed model), else the spec's base model."""
    if given is not None:
        return given, f"local:{given}"
    raw = env.get("FORGE_EVAL_MODEL")
    if raw:
        try:
            ref = json.loads(raw)
        except json.JSONDecodeError as err:
            raise PermanentError(f"FORGE_EVAL_MODEL is not JSON: {err}") from err
        if not isinstance(ref, dict) or ref.get("kind") != "git":
            raise PermanentError('FORGE_EVAL_MODEL must be {"kind": "git", "repo", "branch", "commit", "path"}')
        timeout = float(env.get("FORGE_GIT_TIMEOUT_SECONDS", "600"))
        model = fetch_committed_model(ref, work / "model-repo", timeout)
        return model, f"git:{ref['repo']}@{ref['commit']}:{ref['path']}"
    base = spec.get("base_model") if isinstance(spec.get("base_model"), dict) else None
    if base is None:
        raise PermanentError("spec field base_model is missing")
    name, source, revision = str(base.get("name", "")), str(base.get("source", "")), str(base.get("revision", "main"))
    if source == "local":
        from forge_trainer.model import check_local_model

        return check_local_model(name), f"local:{name}@{revision}"
    if source == "huggingface":
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(name, revision=revision)), f"huggingface:{name}@{revision}"
        except Exception as err:  # the hub's errors are many; none is the trainer's bug
            raise PermanentError(f"cannot fetch base model {name}@{revision} from the hub: {err}") from err
    raise PermanentError(f"base_model.source {source!r} is not one of local, huggingface")


def run_suite(
    model_dir: Path,
    model_ref: str,
    job_id: str,
    suites: dict[str, Suite],
    task_types: list[str],
    out: Path,
    events: Events,
) -> list[dict[str, Any]]:
    """Greedy completions (temperature 0, seed 0) of every task; the rows go to out/evals.jsonl."""
    from forge_trainer.serve import CompletionRequest, Engine, RequestError

    sha = model_sha256(model_dir)
    engine = Engine(model_dir, model_dir.name)
    runnable = [suites[t] for t in task_types if t in suites]
    total = sum(len(s.tasks) for s in runnable)
    rows: list[dict[str, Any]] = []
    out.mkdir(parents=True, exist_ok=True)
    for suite in runnable:
        for task in suite.tasks:
            stops = list(task.get("stop") or [])
            req = CompletionRequest([render_prompt(task)], 1, int(task.get("max_tokens", 64)), 0.0, 1.0, None, 0, stops)
            started = time.perf_counter()
            try:
                text: str | None = str(engine.complete(req)["choices"][0]["text"])
                success, detail = check_answer(task["check"], text)
            except RequestError as err:  # too long a prompt: a failed task, as the orchestrator's path records it
                text, success, detail = None, False, f"refused: HTTP 400: {err}"
            rows.append(
                {
                    "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "model_ref": model_ref,
                    "model_sha256": sha,
                    "job_id": job_id,
                    "task_type": suite.task_type,
                    "task_id": str(task["id"]),
                    "success": success,
                    "latency_ms": round((time.perf_counter() - started) * 1000),
                    "eval_id": f"job-{job_id}/backend",
                    "suite_sha256": suite.sha256,
                    "detail": detail,
                    "completion": (text or "")[:COMPLETION_CHARS],
                }
            )
            events.emit("progress", step=len(rows), max_steps=total)
    (out / ROWS_FILE).write_text("".join(dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows


def run_eval(
    spec: Mapping[str, Any],
    env: Mapping[str, str],
    output_dir: Path,
    suite_b64: str,
    model: Path | None,
    events: Events,
) -> list[dict[str, Any]]:
    job_id = spec.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise PermanentError("spec field job_id is missing")
    objective = spec.get("objective") if isinstance(spec.get("objective"), dict) else {}
    task_types = objective.get("task_types") if isinstance(objective, dict) else None
    if not isinstance(task_types, list) or not all(isinstance(t, str) for t in task_types):
        raise PermanentError("spec field objective.task_types must be a list of task types")
    suites = decode_suite(suite_b64)
    with tempfile.TemporaryDirectory(prefix="forge-eval-") as work:
        model_dir, model_ref = resolve_model(spec, env, model, Path(work))
        rows = run_suite(model_dir, model_ref, job_id, suites, task_types, output_dir, events)
    passed = sum(1 for r in rows if r["success"])
    events.emit("eval", rows=len(rows), successes=passed, file=str(output_dir / ROWS_FILE))
    return rows
