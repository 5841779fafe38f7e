"""
The GRPO policy process's protocol (docs/architecture.md §7): its session config (written by the trainer host,
activities/rl/host/session.ts), the rollout uploads and update requests it takes, checked where they enter, and the
views it answers with. Pure apart from the tokenizer it is handed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from forge_trainer.contract import PermanentError
from forge_trainer.toploc_proofs import parse_proofs

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# The keys every training_log.jsonl line of an RL run has (the contract), in this order.
STEP_KEYS = (
    "step",
    "policy_version",
    "reward_mean",
    "reward_std",
    "loss",
    "kl",
    "staleness_mean",
    "staleness_max",
    "trainer_idle_fraction",
    "rollout_tokens_per_s",
    "step_seconds",
)


class UpdateRefused(Exception):
    """An update or upload this session cannot take; `status` is the HTTP status the server answers with."""

    def __init__(self, message: str, status: int = 409, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.details = details


class Superseded(UpdateRefused):
    """Another session holds the job now (owner.json): this one must stop writing and exit."""

    def __init__(self, owner: str) -> None:
        super().__init__(f"superseded: session {owner} holds this job now", status=410, owner=owner)


# ---- configuration ------------------------------------------------------------------------------------------------


def _num(d: dict[str, Any], key: str, low: float, high: float, default: float | None = None) -> float:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise PermanentError(f"grpo config: {key} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def _int(d: dict[str, Any], key: str, low: int, high: int, default: int | None = None) -> int:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PermanentError(f"grpo config: {key} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _str(d: dict[str, Any], key: str) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not value:
        raise PermanentError(f"grpo config: {key} must be a non-empty string")
    return value


@dataclass(frozen=True)
class GrpoConfig:
    job_id: str
    session_id: str
    model_name: str
    model_source: str
    model_revision: str
    learning_rate: float
    weight_decay: float
    warmup_steps: int
    clip_epsilon: float
    kl_beta: float
    max_off_policy_steps: int
    checkpoint_interval_steps: int
    max_steps: int
    seed: int = 1234
    keep_versions: int = 4
    micro_batch: int = 16
    # Benchmarks only: pad every update to at least this long (simulated accelerator time).
    min_update_seconds: float = 0.0
    # Updates the session takes at once: the running step and the next one, which waits for its turn (pipelining;
    # 1: one at a time; no more than 2, as the wait's timeout counts only while the step before has not started).
    # Reported in the "serving" event: the orchestrator never sends more.
    pipeline_depth: int = 2
    # How long a pipelined update waits for the step before it to start (see update()).
    pipeline_wait_seconds: float = 30.0

    @staticmethod
    def from_json(d: Any) -> GrpoConfig:
        if not isinstance(d, dict):
            raise PermanentError("grpo config: must be a JSON object")
        model = d.get("base_model")
        if not isinstance(model, dict):
            raise PermanentError("grpo config: base_model must be an object")
        source = _str(model, "source")
        if source not in ("local", "huggingface"):
            raise PermanentError(f"grpo config: base_model.source must be local or huggingface, got {source!r}")
        return GrpoConfig(
            job_id=_str(d, "job_id"),
            session_id=_str(d, "session_id"),
            model_name=_str(model, "name"),
            model_source=source,
            model_revision=str(model.get("revision") or "main"),
            learning_rate=_num(d, "learning_rate", 1e-12, 10.0),
            weight_decay=_num(d, "weight_decay", 0.0, 10.0, 0.0),
            warmup_steps=_int(d, "warmup_steps", 0, 10**9, 0),
            clip_epsilon=_num(d, "clip_epsilon", 1e-6, 0.999999),
            kl_beta=_num(d, "kl_beta", 0.0, 1e6),
            max_off_policy_steps=_int(d, "max_off_policy_steps", 0, 1000),
            checkpoint_interval_steps=_int(d, "checkpoint_interval_steps", 1, 10**9),
            max_steps=_int(d, "max_steps", 1, 10**9),
            seed=_int(d, "seed", 0, 2**31 - 1, 1234),
            keep_versions=_int(d, "keep_versions", 1, 1000, 4),
            micro_batch=_int(d, "micro_batch", 1, 4096, 16),
            min_update_seconds=_num(d, "min_update_seconds", 0.0, 3600.0, 0.0),
            pipeline_depth=_int(d, "pipeline_depth", 1, 2, 2),
            pipeline_wait_seconds=_num(d, "pipeline_wait_seconds", 0.0, 3600.0, 30.0),
        )


# ---- rollouts -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    token_ids: list[int]
    logprobs: list[float]
    reward: float
    # TOPLOC proofs of the completion's hidden states (toploc_proofs.py); None: the worker sent none.
    proofs: list[str] | None = None


@dataclass(frozen=True)
class Rollout:
    rollout_id: str
    policy_version: int
    prompt_ids: list[int]
    samples: list[Sample]
    completion_tokens: int
    # The prompt as uploaded (when given as text): the host re-scores the completions against its task's prompt.
    prompt: str | None = None
    # The rollout worker's identity as it uploaded (a refused worker's uploads are turned away: rollout_verify.py).
    worker: str | None = None


def _is_int_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)


def _is_float_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)


def parse_rollout(rollout_id: str, body: Any, tokenizer: PreTrainedTokenizerBase, vocab: int) -> Rollout:
    """A rollout upload (PUT /v1/rollouts/<id>), checked; UpdateRefused(400) names what is wrong."""

    def bad(message: str) -> UpdateRefused:
        return UpdateRefused(f"rollout {rollout_id}: {message}", status=400)

    if not isinstance(body, dict):
        raise bad("the body must be a JSON object")
    version = body.get("policy_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise bad("policy_version must be a non-negative integer")
    prompt_ids = body.get("prompt_token_ids")
    prompt: Any = None
    if prompt_ids is None:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise bad("prompt (a non-empty string) or prompt_token_ids is required")
        prompt_ids = list(tokenizer(prompt)["input_ids"])
    if not _is_int_list(prompt_ids) or not prompt_ids:
        raise bad("prompt_token_ids must be a non-empty list of token ids")
    raw_samples = body.get("samples")
    if not isinstance(raw_samples, list) or not raw_samples:
        raise bad("samples must be a non-empty list")
    samples: list[Sample] = []
    for i, s in enumerate(raw_samples):
        if not isinstance(s, dict):
            raise bad(f"samples[{i}] must be an object")
        ids, lps, reward = s.get("token_ids"), s.get("logprobs"), s.get("reward")
        if not _is_int_list(ids) or not _is_float_list(lps) or len(ids) != len(lps):
            raise bad(f"samples[{i}]: token_ids and logprobs must be lists of the same length")
        if any(t >= vocab for t in ids) or any(t >= vocab for t in prompt_ids):
            raise bad(f"samples[{i}]: a token id is outside the model's vocabulary ({vocab})")
        if any(not math.isfinite(x) or x > 1e-3 for x in lps):
            raise bad(f"samples[{i}]: logprobs must be finite and <= 0")
        if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward):
            raise bad(f"samples[{i}]: reward must be a finite number")
        try:
            proofs = parse_proofs(s)
        except ValueError as err:
            raise bad(f"samples[{i}]: {err}") from err
        samples.append(Sample(list(ids), [float(x) for x in lps], float(reward), proofs))
    worker = body.get("worker")
    if worker is not None and (not isinstance(worker, str) or not 0 < len(worker) <= 200):
        raise bad("worker must be a string of 1 to 200 characters")
    completion_tokens = sum(len(s.token_ids) for s in samples)
    return Rollout(rollout_id, version, list(prompt_ids), samples, completion_tokens, prompt, worker)


@dataclass
class UpdateRequest:
    step: int
    groups: list[tuple[str, list[float]]]
    rollout_tokens_per_s: float | None

    @staticmethod
    def from_json(body: Any) -> UpdateRequest:
        if not isinstance(body, dict):
            raise UpdateRefused("the body must be a JSON object", status=400)
        step = body.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise UpdateRefused("step must be a positive integer", status=400)
        groups_raw = body.get("groups")
        if not isinstance(groups_raw, list) or not groups_raw:
            raise UpdateRefused("groups must be a non-empty list", status=400)
        groups: list[tuple[str, list[float]]] = []
        for i, g in enumerate(groups_raw):
            rid = g.get("rollout_id") if isinstance(g, dict) else None
            adv = g.get("advantages") if isinstance(g, dict) else None
            if not isinstance(rid, str) or not rid or not _is_float_list(adv):
                raise UpdateRefused(f"groups[{i}] must be {{rollout_id, advantages: number[]}}", status=400)
            if not all(math.isfinite(a) for a in adv):
                raise UpdateRefused(f"groups[{i}]: advantages must be finite", status=400)
            groups.append((rid, [float(a) for a in adv]))
        tps = body.get("rollout_tokens_per_s")
        if tps is not None and (isinstance(tps, bool) or not isinstance(tps, (int, float))):
            raise UpdateRefused("rollout_tokens_per_s must be a number", status=400)
        return UpdateRequest(step, groups, None if tps is None else float(tps))


def decode_completion(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    """A completion's text as the reference inference server returns it (serve.py): a final end-of-text token is not
    part of it. Stop strings are cut by whoever knows the task's (the host, before it re-scores)."""
    if ids and ids[-1] == tokenizer.eos_token_id:
        ids = ids[:-1]
    return str(tokenizer.decode(ids))


def rollout_view(r: Rollout, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """What the host needs to re-score a rollout with its task's checker: the prompt, each completion's text, and
    the rewards the worker uploaded."""
    return {
        "prompt": r.prompt,
        "texts": [decode_completion(tokenizer, s.token_ids) for s in r.samples],
        "rewards": [s.reward for s in r.samples],
    }
