"""
Training data: a git repository (DATA_REPO at DATA_BRANCH) holding JSONL files of `{"prompt": ..., "completion": ...}`
under DATA_PATH (a file or a folder, searched recursively for *.jsonl in name order).

An unreachable repository is transient (exit 75); everything about the data itself (a missing branch or path, a
malformed line) is permanent (exit 1) and the message names the file and the line.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from forge_trainer.contract import PermanentError, TransientError

# The same URL forms the orchestrator's schema accepts (jobspec/git-names.ts): no remote helpers such as ext::, no
# option-like values.
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
_USER = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
_URL_FORMS = (
    re.compile(rf"^https://{_HOST}(?::[0-9]{{1,5}})?/\S+$"),
    re.compile(rf"^ssh://(?:{_USER}@)?{_HOST}(?::[0-9]{{1,5}})?/\S+$"),
    re.compile(rf"^{_USER}@{_HOST}:(?!-)\S+$"),
    re.compile(r"^file:///\S*$"),
)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
MAX_ERRORS_SHOWN = 5


@dataclass(frozen=True)
class Example:
    prompt: str
    completion: str
    source: str  # "path/in/repo.jsonl:line"


@dataclass(frozen=True)
class Dataset:
    train: list[Example]
    validation: list[Example]
    files: list[str]
    commit: str
    fingerprint: str  # sha256 over the examples, in order: a resumed run can tell whether its data changed


def check_git_args(repo: str, branch: str, path: str) -> None:
    if repo.startswith("-") or _CONTROL.search(repo) or not any(f.match(repo) for f in _URL_FORMS):
        raise PermanentError(
            f"DATA_REPO {repo!r} is not a git URL this trainer accepts "
            "(https://host/path, ssh://[user@]host/path, user@host:path or file:///path)"
        )
    if branch.startswith("-") or _CONTROL.search(branch) or ".." in branch or ":" in branch:
        raise PermanentError(f"DATA_BRANCH {branch!r} is not a valid branch name")
    if path.startswith(("/", "-")) or "\\" in path or ".." in path.split("/") or re.search(r"[\x00-\x1f\x7f]", path):
        raise PermanentError(f"DATA_PATH {path!r} must be a relative path inside the repository, without '..'")


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    # Never wait for a person: no credential prompts, ssh in batch mode with a connect timeout.
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=30")
    return env


def clone(repo: str, branch: str, dest: Path, timeout_s: float) -> str:
    """Shallow clone of one branch; returns the commit id. Unreachable → TransientError; no such branch → Permanent."""
    cmd = [
        "git",
        "-c", "protocol.ext.allow=never",
        "-c", "http.lowSpeedLimit=1000",
        "-c", "http.lowSpeedTime=60",
        "clone", "--quiet", "--depth", "1", "--single-branch", "--no-tags", "--branch", branch,
        "--", repo, str(dest),
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, env=_git_env(), capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as err:
        raise TransientError(f"cloning the data repo {repo} took longer than {timeout_s:.0f} s") from err
    except FileNotFoundError as err:
        raise PermanentError("git is not installed on this host") from err
    if done.returncode != 0:
        detail = " ".join(done.stderr.split())[-500:]
        if re.search(r"Remote branch .* not found|couldn't find remote ref", done.stderr):
            raise PermanentError(f"data repo {repo} has no branch {branch!r}: {detail}")
        raise TransientError(f"data repo {repo} is unreachable (git clone exit {done.returncode}): {detail}")
    head = subprocess.run(
        ["git", "-C", str(dest), "rev-parse", "HEAD"], capture_output=True, text=True, check=False, timeout=60
    )
    return head.stdout.strip()


def data_files(root: Path, data_path: str) -> list[Path]:
    """The JSONL files under `data_path` inside `root`, never following a link out of the repository."""
    root = root.resolve()
    target = (root / data_path).resolve()
    if target != root and root not in target.parents:
        raise PermanentError(f"DATA_PATH {data_path!r} leads out of the repository")
    if not target.exists():
        raise PermanentError(f"DATA_PATH {data_path!r} does not exist in the data repo")
    if target.is_file():
        return [target]
    files: list[Path] = []
    for f in sorted(target.rglob("*.jsonl")):
        if ".git" in f.relative_to(root).parts or not f.is_file():
            continue
        real = f.resolve()
        if root not in real.parents:
            raise PermanentError(f"data file {f.relative_to(root)} is a link out of the repository")
        files.append(f)
    if not files:
        raise PermanentError(f"DATA_PATH {data_path!r} holds no .jsonl files")
    return files


def read_jsonl(file: Path, name: str) -> list[Example]:
    """Examples of one file; every problem is reported as `name, line N: ...` (the first few, then a count)."""
    examples: list[Example] = []
    errors: list[str] = []
    with file.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            problem = None
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                problem = f"not UTF-8 ({err.reason} at byte {err.start})"
                line = ""
            if problem is None and line.strip() == "":
                continue
            if problem is None:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    problem = f"not valid JSON ({err.msg} at column {err.colno})"
                else:
                    problem = _record_problem(record)
                    if problem is None:
                        examples.append(Example(record["prompt"], record["completion"], f"{name}:{lineno}"))
            if problem is not None:
                errors.append(f"{name}, line {lineno}: {problem}")
    if errors:
        more = f" (and {len(errors) - MAX_ERRORS_SHOWN} more)" if len(errors) > MAX_ERRORS_SHOWN else ""
        raise PermanentError("bad data: " + "; ".join(errors[:MAX_ERRORS_SHOWN]) + more)
    return examples


def _record_problem(record: object) -> str | None:
    if not isinstance(record, dict):
        return 'expected a JSON object {"prompt": ..., "completion": ...}'
    for field in ("prompt", "completion"):
        if field not in record:
            return f'field "{field}" is missing'
        if not isinstance(record[field], str):
            return f'field "{field}" must be a string, got {type(record[field]).__name__}'
    if record["completion"] == "":
        return 'field "completion" is empty: there is nothing to learn'
    return None


def split(examples: list[Example], validation_split: float, seed: int) -> tuple[list[Example], list[Example]]:
    """A seeded shuffle, then the first round(n * validation_split) examples (at least one when > 0) validate."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = 0
    if validation_split > 0:
        n_val = max(1, round(len(examples) * validation_split))
    if n_val >= len(examples):
        raise PermanentError(
            f"bad hyperparameter data.validation_split: {validation_split} of {len(examples)} examples leaves "
            "nothing to train on"
        )
    val = [examples[i] for i in sorted(order[:n_val])]
    train = [examples[i] for i in sorted(order[n_val:])]
    return train, val


def fingerprint(examples: list[Example]) -> str:
    h = hashlib.sha256()
    for e in examples:
        for part in (e.prompt, e.completion):
            data = part.encode("utf-8")
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
    return h.hexdigest()


def load_dataset(
    repo: str, branch: str, data_path: str, validation_split: float, seed: int, workdir: Path, timeout_s: float
) -> Dataset:
    check_git_args(repo, branch, data_path)
    dest = workdir / "data-repo"
    commit = clone(repo, branch, dest, timeout_s)
    files = data_files(dest, data_path)
    examples: list[Example] = []
    names: list[str] = []
    for f in files:
        name = f.relative_to(dest.resolve()).as_posix()
        names.append(name)
        examples.extend(read_jsonl(f, name))
    if not examples:
        raise PermanentError(f"bad data: no examples in {', '.join(names)}")
    train, val = split(examples, validation_split, seed)
    return Dataset(train=train, validation=val, files=names, commit=commit, fingerprint=fingerprint(examples))
