"""
GRPO policy updates (job_type "rl", docs/architecture.md §7) for a trainer host that keeps one job's policy in memory.

The objective is DeepSeekMath's GRPO with importance ratios against the policy that generated each rollout (which
may lag the current one by at most `max_off_policy_steps` versions, as in INTELLECT-2's asynchronous RL):

    r_t      = exp(logp_theta(o_t) - logp_behaviour(o_t))              from the rollout's own token logprobs
    surr_t   = min(r_t * A, clip(r_t, 1 - eps, 1 + eps) * A)           A: the group-relative advantage of the sample
    kl_t     = exp(ref_t - logp_t) - (ref_t - logp_t) - 1             k3 estimator of KL(pi_theta || pi_ref) >= 0
    loss     = mean over samples of ( mean over the sample's tokens of -(surr_t - kl_beta * kl_t) )

Advantages are computed by the orchestrator (workflows/rl/advantages.ts) and arrive with the update. One update is
one optimizer step (AdamW, weight decay on matrices only, gradients clipped at norm 1, learning rate warmed up
linearly over `warmup_steps` then constant); its result is policy version `step`. The reference model is the base
model, frozen.

A session writes under its job's state folder (shared by every trainer host, so that another host can resume):
  checkpoints/step-NNNNNNNN/   every `checkpoint_interval_steps`, at the last step and on SIGTERM (checkpoint.py)
  training_log.jsonl           one line per step (keys in STEP_KEYS), cut back to the checkpoint on resume
  owner.json                   the session that holds the job: an older session that is still alive may no longer
                               write there (fencing), so a host presumed dead cannot overwrite its successor's state
  final/                       the exported policy (model.safetensors, config.json, tokenizer, training_log.jsonl,
                               metrics.json)
and keeps each version's weights it serves (the newest `keep_versions`) in a folder of its own.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forge_trainer import checkpoint as ckpt
from forge_trainer.contract import Events, PermanentError, dumps
from forge_trainer.toploc_proofs import parse_proofs

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MAX_GRAD_NORM = 1.0
OWNER_FILE = "owner.json"
FINAL_DIR = "final"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_KIND = "grpo"
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


# ---- the objective (pure) -----------------------------------------------------------------------------------------


def grpo_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_epsilon: float,
    kl_beta: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """
    Per-sample GRPO losses ([B]) for token logprobs [B, T] (new: with gradients; old: the behaviour policy's; ref:
    the reference model's), advantages [B] and a 0/1 mask [B, T] of completion tokens. Also returns summed token
    statistics (kl, clipped, ratio) and the token count, so that micro-batches add up.
    """
    import torch

    mask = mask.to(new_logprobs.dtype)
    ratio = torch.exp(new_logprobs - old_logprobs)
    adv = advantages.to(new_logprobs.dtype).unsqueeze(1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_epsilon, 1.0 + clip_epsilon) * adv
    surrogate = torch.minimum(unclipped, clipped)
    log_ref_ratio = ref_logprobs - new_logprobs
    kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1.0
    per_token = -(surrogate - kl_beta * kl)
    lengths = mask.sum(dim=1).clamp(min=1.0)
    per_sample = (per_token * mask).sum(dim=1) / lengths
    with torch.no_grad():
        was_clipped = (clipped < unclipped).to(mask.dtype)  # the clip bound binds for this token
        stats = {
            "kl_sum": (kl * mask).sum(),
            "clipped_sum": (was_clipped * mask).sum(),
            "ratio_sum": (ratio * mask).sum(),
            "tokens": mask.sum(),
        }
    return per_sample, stats


def lr_multiplier(step: int, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then constant (RL runs have no natural end to decay towards)."""
    if warmup <= 0:
        return 1.0
    return min(1.0, step / warmup)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


# ---- the session --------------------------------------------------------------------------------------------------


@dataclass
class Version:
    number: int
    path: Path
    sha256: str


@dataclass
class SessionState:
    version: int = 0
    resumed_from: int | None = None
    last_checkpoint: int | None = None
    last_update_end: float = field(default_factory=time.monotonic)
    started: float = field(default_factory=time.time)
    # The answers of the newest steps, by step: a retried update whose first answer was lost gets it again.
    results: dict[int, dict[str, Any]] = field(default_factory=dict)


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


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _std(xs: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


class GrpoSession:
    """One job's policy, reference model and optimizer in memory; thread-safe (one update at a time)."""

    def __init__(self, cfg: GrpoConfig, state_dir: Path, work_dir: Path, events: Events) -> None:
        import torch

        from forge_trainer.finetune import make_optimizer
        from forge_trainer.model import load_base

        self.cfg = cfg
        self.state_dir = state_dir
        self.work_dir = work_dir
        self.events = events
        self.lock = threading.RLock()
        # Signalled whenever the version moves or the session becomes unusable: a pipelined update (the next step, sent
        # while this one runs so that the trainer never waits for a round trip) waits on it for its turn.
        self.turn = threading.Condition(self.lock)
        self.rollouts: dict[str, Rollout] = {}
        # Every rollout id this session ever stored: an id is taken once (a second upload is refused, never replaces
        # the first, so a holder of the upload token cannot swap the completions of a group the workflow accepted).
        self.rollout_ids: set[str] = set()
        # Uploads take only this lock, never the update lock: the rollouts of the next step arrive while a step
        # updates (that is the asynchrony), and must not wait for it to end.
        self.rollouts_lock = threading.Lock()
        # Workers that reached rl.max_rejections (the host tells: POST /v1/verify-rollouts): their uploads are refused.
        self.refused_workers: set[str] = set()
        self.versions: dict[int, Version] = {}
        self.st = SessionState()
        self.superseded: str | None = None
        # Why this session takes no more update, checkpoint or export (410): it stopped (its last checkpoint is where
        # its successor resumes), or a step failed after the optimizer changed the weights (the model in memory then
        # matches no version whose log line exists).
        self.unusable: str | None = None
        # The training log as this session knows it (the resumed checkpoint's lines, then its own steps). Checkpoints
        # and the export are written from it, never from the shared file: a predecessor still finishing an update
        # could touch that file, and a checkpoint must hold exactly the steps up to its version.
        self.log_lines: list[str] = []
        torch.manual_seed(cfg.seed)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        state_dir.mkdir(parents=True, exist_ok=True)
        work_dir.mkdir(parents=True, exist_ok=True)

        resume = self._resume_point()
        if resume is not None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from forge_trainer.model import quiet_transformers

            quiet_transformers()
            self.model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(resume.path)
            self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(resume.path)
        else:
            self.model, self.tokenizer = load_base(cfg.model_name, cfg.model_source, cfg.model_revision)
        self.reference, _ = load_base(cfg.model_name, cfg.model_source, cfg.model_revision)
        self.model.to(self.device).train()
        self.reference.to(self.device).eval()
        for p in self.reference.parameters():
            p.requires_grad_(False)
        self.optimizer = make_optimizer(self.model, cfg.learning_rate, cfg.weight_decay)
        self.vocab = int(self.model.get_input_embeddings().weight.shape[0])
        self.pad_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)
        self._claim()
        if resume is not None:
            ckpt.restore_optimizer(resume, self.optimizer)
            self.log_lines = ckpt.restore_log(resume, state_dir)
            self.st.version = resume.step
            self.st.resumed_from = resume.step
            self.st.last_checkpoint = resume.step
            events.emit("resume", step=resume.step, checkpoint=str(resume.path))
        else:
            (state_dir / ckpt.LOG_FILE).unlink(missing_ok=True)
        self._publish(self.st.version)
        self.st.last_update_end = time.monotonic()

    # -- ownership (fencing) --

    def _claim(self) -> None:
        tmp = self.state_dir / f".{OWNER_FILE}.{self.cfg.session_id}"
        tmp.write_text(json.dumps({"session_id": self.cfg.session_id, "since": time.time()}) + "\n", encoding="utf-8")
        tmp.replace(self.state_dir / OWNER_FILE)

    def _check_usable(self) -> None:
        if self.unusable is not None:
            raise UpdateRefused(
                f"session {self.cfg.session_id}: {self.unusable}; the run resumes on another session",
                status=410,
                version=self.st.version,
            )

    def _check_owner(self) -> None:
        try:
            owner = json.loads((self.state_dir / OWNER_FILE).read_text(encoding="utf-8")).get("session_id")
        except (OSError, ValueError):
            owner = None
        if owner != self.cfg.session_id:
            self.superseded = str(owner)
            self.turn.notify_all()
            raise Superseded(str(owner))

    def _resume_point(self) -> ckpt.Checkpoint | None:
        for c in ckpt.candidates(self.state_dir):
            ours = c.state.get("job_id") == self.cfg.job_id and c.state.get("kind") == CHECKPOINT_KIND
            if ours and c.step <= self.cfg.max_steps:
                return c
        return None

    # -- versions --

    @property
    def version(self) -> int:
        return self.st.version

    def current(self) -> Version:
        return self.versions[self.st.version]

    def _publish(self, number: int) -> Version:
        folder = self.work_dir / "versions" / f"v{number:08d}"
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
        v = Version(number, folder / WEIGHTS_FILE, sha256_file(folder / WEIGHTS_FILE))
        self.versions[number] = v
        for old in sorted(self.versions)[: -self.cfg.keep_versions]:
            shutil.rmtree(self.versions.pop(old).path.parent, ignore_errors=True)
        self.events.emit("policy", version=number, sha256=v.sha256)
        return v

    def weights(self, number: int) -> Version | None:
        return self.versions.get(number)

    # -- rollouts --

    def add_rollout(self, rollout_id: str, body: Any) -> Rollout:
        r = parse_rollout(rollout_id, body, self.tokenizer, self.vocab)
        with self.rollouts_lock:
            if r.worker is not None and r.worker in self.refused_workers:
                raise UpdateRefused(
                    f"worker {r.worker} is refused for the rest of this run: it reached rl.max_rejections "
                    "(see the run's rl.rejected_rollouts)",
                    status=403,
                    refused_worker=True,
                )
            # The version only grows, and a version is published after it is set: a rollout of a real version passes.
            if r.policy_version > self.st.version:
                raise UpdateRefused(
                    f"rollout {rollout_id} claims policy version {r.policy_version}, newer than this session's "
                    f"{self.st.version}",
                    status=409,
                )
            if rollout_id in self.rollout_ids:
                raise UpdateRefused(
                    f"rollout {rollout_id} was uploaded already: an id is taken once (upload under a new id)",
                    status=409,
                    duplicate=True,
                )
            self.rollout_ids.add(rollout_id)
            self.rollouts[rollout_id] = r
        return r

    def rollout_texts(self, rollout_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The stored rollouts among `rollout_ids`, decoded (POST /v1/rollout-texts): what the host re-scores."""
        with self.rollouts_lock:
            found = {rid: self.rollouts[rid] for rid in rollout_ids if rid in self.rollouts}
        return {rid: rollout_view(r, self.tokenizer) for rid, r in found.items()}

    # -- updates --

    def update(self, req: UpdateRequest) -> dict[str, Any]:
        with self.lock:
            if self.st.version + 2 <= req.step <= self.st.version + self.cfg.pipeline_depth:
                # Pipelined: the orchestrator sent this step while the one before runs, so that the trainer does not
                # wait a round trip between steps. It waits for its turn. A running step holds the lock to its end, so
                # the timeout only bounds how long the step before may take to *start* (it was sent first, but two
                # requests can cross); a step that fails leaves the version where it was and this one is refused.
                self.turn.wait_for(
                    lambda: req.step <= self.st.version + 1 or self.unusable is not None or self.superseded is not None,
                    timeout=self.cfg.pipeline_wait_seconds,
                )
            if self.superseded is not None:
                raise Superseded(self.superseded)
            self._check_usable()
            self._check_owner()
            if req.step <= self.st.version and req.step in self.st.results:
                return self.st.results[req.step]  # a retried call whose answer was lost: same result, applied once
            if req.step != self.st.version + 1:
                raise UpdateRefused(
                    f"update for step {req.step}, but the policy is at version {self.st.version} (expects step "
                    f"{self.st.version + 1})",
                    status=409,
                    version=self.st.version,
                )
            with self.rollouts_lock:
                missing = [rid for rid, _ in req.groups if rid not in self.rollouts]
                rollouts = [self.rollouts[rid] for rid, _ in req.groups if rid in self.rollouts]
            if missing:
                raise UpdateRefused(f"{len(missing)} rollouts were never uploaded here", status=409, missing=missing)
            staleness = [self.st.version - r.policy_version for r in rollouts]
            if max(staleness) > self.cfg.max_off_policy_steps:
                raise UpdateRefused(
                    f"a rollout of policy version {min(r.policy_version for r in rollouts)} is "
                    f"{max(staleness)} versions old at version {self.st.version}; max_off_policy_steps is "
                    f"{self.cfg.max_off_policy_steps}",
                    status=409,
                )
            for (rid, adv), r in zip(req.groups, rollouts, strict=True):
                if len(adv) != len(r.samples):
                    raise UpdateRefused(
                        f"rollout {rid} has {len(r.samples)} samples but {len(adv)} advantages", status=400
                    )
            start = time.monotonic()
            idle = max(0.0, start - self.st.last_update_end)
            stats = self._optimize(req, rollouts)
            try:
                return self._finish_step(req, rollouts, staleness, stats, start, idle)
            except Exception as err:
                self.unusable = f"step {req.step} failed after its weight update ({type(err).__name__}: {err})"
                raise
            finally:
                self.turn.notify_all()

    def _finish_step(
        self,
        req: UpdateRequest,
        rollouts: list[Rollout],
        staleness: list[int],
        stats: dict[str, float],
        start: float,
        idle: float,
    ) -> dict[str, Any]:
        """The rest of a step once the weights changed (under update()'s lock): version, log line, checkpoint."""
        if self.cfg.min_update_seconds > 0:
            time.sleep(max(0.0, self.cfg.min_update_seconds - (time.monotonic() - start)))
        self.st.version = req.step
        version = self._publish(req.step)
        with self.rollouts_lock:
            for rid, _ in req.groups:
                self.rollouts.pop(rid, None)
        end = time.monotonic()
        step_seconds = end - self.st.last_update_end
        rewards = [s.reward for r in rollouts for s in r.samples]
        line = {
            "step": req.step,
            "policy_version": req.step,
            "reward_mean": _mean(rewards),
            "reward_std": _std(rewards),
            "loss": stats["loss"],
            "kl": stats["kl"],
            "staleness_mean": _mean([float(s) for s in staleness]),
            "staleness_max": max(staleness),
            "trainer_idle_fraction": idle / step_seconds if step_seconds > 0 else 0.0,
            "rollout_tokens_per_s": req.rollout_tokens_per_s,
            "step_seconds": step_seconds,
            "update_seconds": end - start,
            "clip_fraction": stats["clip_fraction"],
            "ratio_mean": stats["ratio_mean"],
            "grad_norm": stats["grad_norm"],
            "lr": stats["lr"],
            "samples": len(rewards),
            "completion_tokens": sum(r.completion_tokens for r in rollouts),
            "sha256": version.sha256,
        }
        self._log(line)
        checkpointed = None
        if req.step % self.cfg.checkpoint_interval_steps == 0 or req.step >= self.cfg.max_steps:
            checkpointed = str(self.checkpoint())
        self.st.last_update_end = time.monotonic()
        result = {**line, "version": req.step, "checkpoint": checkpointed}
        self.st.results[req.step] = result
        for old in sorted(self.st.results)[: -self.cfg.pipeline_depth]:
            del self.st.results[old]
        self.events.emit("progress", step=req.step, max_steps=self.cfg.max_steps, loss=stats["loss"])
        return result

    def _optimize(self, req: UpdateRequest, rollouts: list[Rollout]) -> dict[str, float]:
        import torch

        seqs: list[tuple[list[int], int, list[float], float]] = []  # ids, prompt length, old logprobs, advantage
        for (_, adv), r in zip(req.groups, rollouts, strict=True):
            for s, a in zip(r.samples, adv, strict=True):
                if s.token_ids:
                    seqs.append((r.prompt_ids + s.token_ids, len(r.prompt_ids), s.logprobs, a))
        lr = self.cfg.learning_rate * lr_multiplier(req.step, self.cfg.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        total = max(1, len(seqs))
        sums = {"loss": 0.0, "kl_sum": 0.0, "clipped_sum": 0.0, "ratio_sum": 0.0, "tokens": 0.0}
        for i in range(0, len(seqs), self.cfg.micro_batch):
            part = seqs[i : i + self.cfg.micro_batch]
            width = max(len(ids) for ids, _, _, _ in part)
            ids_t = torch.full((len(part), width), self.pad_id, dtype=torch.long)
            attn = torch.zeros((len(part), width), dtype=torch.long)
            old = torch.zeros((len(part), width - 1))
            mask = torch.zeros((len(part), width - 1))
            adv = torch.tensor([a for _, _, _, a in part])
            for j, (ids, plen, lps, _) in enumerate(part):
                ids_t[j, : len(ids)] = torch.tensor(ids)
                attn[j, : len(ids)] = 1
                # Position t of the shifted logits predicts token t+1: completion token k sits at plen + k.
                old[j, plen - 1 : plen - 1 + len(lps)] = torch.tensor(lps)
                mask[j, plen - 1 : plen - 1 + len(lps)] = 1.0
            ids_t, attn = ids_t.to(self.device), attn.to(self.device)
            old, mask, adv = old.to(self.device), mask.to(self.device), adv.to(self.device)
            targets = ids_t[:, 1:].unsqueeze(-1)
            logits = self.model(input_ids=ids_t, attention_mask=attn).logits[:, :-1].float()
            new = torch.log_softmax(logits, dim=-1).gather(-1, targets).squeeze(-1)
            with torch.no_grad():
                ref_logits = self.reference(input_ids=ids_t, attention_mask=attn).logits[:, :-1].float()
                ref = torch.log_softmax(ref_logits, dim=-1).gather(-1, targets).squeeze(-1)
            per_sample, st = grpo_loss(new, old, ref, adv, mask, self.cfg.clip_epsilon, self.cfg.kl_beta)
            loss = per_sample.sum() / total
            loss.backward()
            sums["loss"] += float(loss.detach())
            for k in ("kl_sum", "clipped_sum", "ratio_sum", "tokens"):
                sums[k] += float(st[k])
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), MAX_GRAD_NORM))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        tokens = max(1.0, sums["tokens"])
        return {
            "loss": sums["loss"],
            "kl": sums["kl_sum"] / tokens,
            "clip_fraction": sums["clipped_sum"] / tokens,
            "ratio_mean": sums["ratio_sum"] / tokens,
            "grad_norm": grad_norm,
            "lr": lr,
        }

    def _log(self, line: dict[str, Any]) -> None:
        self._check_owner()
        text = dumps({"event": "step", **line, "time": round(time.time(), 3)})
        self.log_lines.append(text)
        with (self.state_dir / ckpt.LOG_FILE).open("a", encoding="utf-8") as f:
            f.write(text + "\n")

    # -- checkpoints and export --

    def checkpoint(self) -> Path | None:
        """A checkpoint of the current version (none when the newest one already is it)."""
        with self.lock:
            self._check_usable()
            if self.st.last_checkpoint == self.st.version:
                return None
            self._check_owner()
            state = {
                "job_id": self.cfg.job_id,
                "kind": CHECKPOINT_KIND,
                "version": self.st.version,
                "session_id": self.cfg.session_id,
                "sha256": self.current().sha256,
            }
            path = ckpt.save(
                self.state_dir, self.st.version, self.model, self.tokenizer, self.optimizer, state, self.log_lines
            )
            self.st.last_checkpoint = self.st.version
            self.events.emit("checkpoint", step=self.st.version, path=str(path))
            return path

    def stop(self) -> Path | None:
        """Checkpoints the current version and takes no update after it: the process is about to exit, and an update
        that was waiting for the lock must not move the policy past the checkpoint its successor resumes from."""
        with self.lock:
            try:
                return self.checkpoint()
            finally:
                self.unusable = self.unusable or f"stopped at version {self.st.version}"
                self.turn.notify_all()

    def export(self) -> list[dict[str, Any]]:
        """The policy as the run's outputs (docs/architecture.md §6) under state_dir/final; their sha256 and size."""
        with self.lock:
            self._check_usable()
            self._check_owner()
            final = self.state_dir / FINAL_DIR
            tmp = self.state_dir / f".{FINAL_DIR}-{self.cfg.session_id}"
            shutil.rmtree(tmp, ignore_errors=True)
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            lines = list(self.log_lines)
            (tmp / ckpt.LOG_FILE).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            steps = [json.loads(line) for line in lines if line.startswith("{")]
            (tmp / "metrics.json").write_text(json.dumps(self._metrics(steps), indent=2) + "\n", encoding="utf-8")
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            files = sorted(p for p in final.rglob("*") if p.is_file())
            return [
                {"path": p.relative_to(final).as_posix(), "sha256": sha256_file(p), "size": p.stat().st_size}
                for p in files
            ]

    def _metrics(self, steps: list[dict[str, Any]]) -> dict[str, Any]:
        k = max(1, min(5, len(steps) // 4 or 1))
        first, last = steps[:k], steps[-k:]

        def avg(rows: list[dict[str, Any]], key: str) -> float | None:
            vals = [float(r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            return _mean(vals) if vals else None

        return {
            "job_type": "rl",
            "algorithm": "grpo",
            "steps": self.st.version,
            "policy_version": self.st.version,
            "sha256": self.current().sha256,
            "reward_mean_first": avg(first, "reward_mean"),
            "reward_mean_last": avg(last, "reward_mean"),
            "kl_last": avg(last, "kl"),
            "staleness_max": max((int(r.get("staleness_max", 0)) for r in steps), default=0),
            "trainer_idle_fraction": avg(steps, "trainer_idle_fraction"),
            "clip_epsilon": self.cfg.clip_epsilon,
            "kl_beta": self.cfg.kl_beta,
            "max_off_policy_steps": self.cfg.max_off_policy_steps,
            "resumed_from": self.st.resumed_from,
        }
