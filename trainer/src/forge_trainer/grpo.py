"""
GRPO policy updates (job_type "rl", docs/architecture.md §7) for a trainer host that keeps one job's policy in memory:
the session (this file), its protocol (grpo_protocol.py: config, rollout uploads, update requests) and the objective
(grpo_loss.py).

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
  training_log.jsonl           one line per step (keys in grpo_protocol.STEP_KEYS), cut back to the checkpoint on resume
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
from forge_trainer.contract import Events, dumps
from forge_trainer.grpo_loss import grpo_loss, lr_multiplier
from forge_trainer.grpo_protocol import (
    GrpoConfig,
    Rollout,
    Superseded,
    UpdateRefused,
    UpdateRequest,
    parse_rollout,
    rollout_view,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MAX_GRAD_NORM = 1.0
OWNER_FILE = "owner.json"
FINAL_DIR = "final"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_KIND = "grpo"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
