"""
The trainer contract (docs/architecture.md §6): exit codes, the errors that map to them, and the JSON event lines
on stdout.

Exit codes: 0 success, 75 transient (EX_TEMPFAIL: data repo unreachable, interrupted by SIGTERM after a checkpoint),
1 permanent (bad data, bad hyperparameters, a model that cannot be loaded). Human-readable messages go to stderr:
the orchestrator shows the last stderr lines as the failure detail.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

EXIT_OK = 0
EXIT_PERMANENT = 1
EXIT_TRANSIENT = 75


class TrainerError(Exception):
    """A failure the trainer knows how to classify; `exit_code` is what the process exits with."""

    exit_code = EXIT_PERMANENT
    kind = "permanent"


class PermanentError(TrainerError):
    """Retrying cannot help: bad data, bad hyperparameters, a model that does not exist."""


class TransientError(TrainerError):
    """Another attempt may succeed: an unreachable data repo, a preemption."""

    exit_code = EXIT_TRANSIENT
    kind = "transient"


def _json_safe(value: Any) -> Any:
    """NaN and infinities are not JSON: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def dumps(record: dict[str, Any], indent: int | None = None) -> str:
    separators = None if indent else (",", ":")
    return json.dumps(_json_safe(record), separators=separators, indent=indent, allow_nan=False)


class Events:
    """
    Writes `{"event": ...}` lines to stdout (the orchestrator parses them) and, when given a log file, appends the
    same records with a timestamp to it (training_log.jsonl).
    """

    def __init__(self, out: TextIO | None = None, log_file: Path | None = None) -> None:
        self._out: TextIO | None = out if out is not None else sys.stdout
        self._log_file = log_file

    def attach_log(self, log_file: Path) -> None:
        self._log_file = log_file

    def emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, **fields}
        if self._out is not None:
            try:
                self._out.write(dumps(record) + "\n")
                self._out.flush()
            except (BrokenPipeError, ValueError):
                # Nobody reads any more (the orchestrator or host process died): events are advisory, the work and
                # its files go on, and a failed write must not break off a step half done.
                self._out = None
        if self._log_file is not None:
            with self._log_file.open("a", encoding="utf-8") as f:
                f.write(dumps({**record, "time": round(time.time(), 3)}) + "\n")


def fail(message: str) -> None:
    """A one-line error message for people, on stderr."""
    sys.stderr.write(f"forge-trainer: error: {message}\n")
    sys.stderr.flush()
