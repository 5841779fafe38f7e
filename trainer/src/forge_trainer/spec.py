"""
The part of a training-job-v1 spec the trainer uses, checked again here: the trainer runs on hosts
that must not trust whoever launched it to have validated the spec. Any problem is permanent (exit code 1).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge_trainer.contract import PermanentError

MODEL_SOURCES = ("huggingface", "local")


@dataclass(frozen=True)
class Hyperparameters:
    learning_rate: float
    batch_size: int
    gradient_accumulation_steps: int
    warmup_steps: int
    weight_decay: float


@dataclass(frozen=True)
class FinetuneJob:
    job_id: str
    job_type: str
    model_name: str
    model_source: str
    model_revision: str
    data_repo: str
    data_branch: str
    data_path: str
    validation_split: float
    max_steps: int
    hyper: Hyperparameters
    save_checkpoints: bool
    checkpoint_interval_steps: int


class _Reader:
    """Typed field access that names the offending field in its error."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec

    def get(self, dotted: str, default: Any = ...) -> Any:
        node: Any = self.spec
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                if default is not ...:
                    return default
                raise PermanentError(f"spec field {dotted} is missing")
            node = node[part]
        return node

    def string(self, dotted: str, default: Any = ...) -> str:
        value = self.get(dotted, default)
        if not isinstance(value, str) or value == "":
            raise PermanentError(f"spec field {dotted} must be a non-empty string, got {value!r}")
        return value

    def integer(self, dotted: str, minimum: int, default: Any = ...) -> int:
        value = self.get(dotted, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise PermanentError(f"bad hyperparameter {dotted}: must be an integer >= {minimum}, got {value!r}")
        return value

    def number(self, dotted: str, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> float:
        value = self.get(dotted)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok:
            ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
        if not ok:
            interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
            raise PermanentError(f"bad hyperparameter {dotted}: must be a number in {interval}, got {value!r}")
        return float(value)

    def boolean(self, dotted: str, default: bool) -> bool:
        value = self.get(dotted, default)
        if not isinstance(value, bool):
            raise PermanentError(f"spec field {dotted} must be true or false, got {value!r}")
        return value


def load_spec_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise PermanentError(f"cannot read the spec FORGE_SPEC={path}: {err.strerror}") from err
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as err:
        raise PermanentError(f"FORGE_SPEC={path} is not valid JSON: {err}") from err
    if not isinstance(spec, dict):
        raise PermanentError(f"FORGE_SPEC={path} must hold a JSON object")
    return spec


def finetune_job(spec: Mapping[str, Any], env: Mapping[str, str] | None = None) -> FinetuneJob:
    """
    The job's settings. The contract env (MODEL, DATA_REPO, DATA_BRANCH, DATA_PATH) wins over the spec's copies of
    the same values: the backend that launched us derived them from the spec and may have resolved them.
    """
    env = os.environ if env is None else env
    r = _Reader(spec)
    source = r.string("base_model.source")
    if source not in MODEL_SOURCES:
        raise PermanentError(f"spec field base_model.source must be one of {', '.join(MODEL_SOURCES)}, got {source!r}")
    hyper = Hyperparameters(
        # Above 1 no optimizer step of a language model makes sense; it is a typo for 1e-x.
        learning_rate=r.number("hyperparameters.learning_rate", 0.0, 1.0, low_open=True),
        batch_size=r.integer("hyperparameters.batch_size", 1),
        gradient_accumulation_steps=r.integer("hyperparameters.gradient_accumulation_steps", 1),
        warmup_steps=r.integer("hyperparameters.warmup_steps", 0),
        weight_decay=r.number("hyperparameters.weight_decay", 0.0, 1.0),
    )
    fmt = r.string("data.format", "jsonl")
    if fmt != "jsonl":
        raise PermanentError(f"spec field data.format must be jsonl, got {fmt!r}")
    return FinetuneJob(
        job_id=r.string("job_id"),
        job_type=r.string("job_type"),
        model_name=env.get("MODEL") or r.string("base_model.name"),
        model_source=source,
        model_revision=r.string("base_model.revision", "main"),
        data_repo=env.get("DATA_REPO") or r.string("data.repo"),
        data_branch=env.get("DATA_BRANCH") or r.string("data.branch"),
        data_path=env.get("DATA_PATH") or r.string("data.path"),
        validation_split=r.number("data.validation_split", 0.0, 1.0, high_open=True),
        max_steps=r.integer("objective.max_steps", 1),
        hyper=hyper,
        save_checkpoints=r.boolean("artifacts.save_checkpoints", False),
        checkpoint_interval_steps=r.integer("artifacts.checkpoint_interval_steps", 1, 1000),
    )
