"""
Supervised finetuning (job_type "finetune"): the loss is on the completion tokens (and the end-of-text token after
them), never on the prompt. One optimizer step is `gradient_accumulation_steps` micro-batches of `batch_size`
examples; the loss of a step is the mean over all its completion tokens. Learning rate: linear warm-up over
`warmup_steps`, then linear decay to zero at `max_steps`. AdamW, weight decay on matrices only, gradients clipped
at norm 1.

Everything that decides what a step computes is a function of the step number (data order: a seeded permutation
per epoch; learning rate: the schedule), so a run resumed from a checkpoint computes the same steps as one that
never stopped.
"""

from __future__ import annotations

import math
import os
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from forge_trainer import __version__
from forge_trainer import checkpoint as ckpt
from forge_trainer.contract import Events, PermanentError, TransientError, dumps
from forge_trainer.data import Dataset, Example, load_dataset
from forge_trainer.model import check_local_model, load_base, quiet_transformers
from forge_trainer.spec import FinetuneJob

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SEED = 1234
MAX_GRAD_NORM = 1.0
MAX_SEQ_LEN = 2048
RECENT_LOSSES = 20


@dataclass(frozen=True)
class RunOptions:
    output_dir: Path
    attempt: int = 1
    seed: int = SEED
    git_timeout_s: float = 600.0


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop looks at it between optimizer steps."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal = signum

    def check(self, where: str) -> None:
        if self.signal is not None:
            raise TransientError(f"interrupted by {signal.Signals(self.signal).name} {where}; nothing to keep yet")


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # -100 where no loss is taken (the prompt)


@dataclass
class TrainState:
    """What a checkpoint records besides tensors; JSON."""

    job_id: str
    max_steps: int
    data_fingerprint: str
    data_commit: str
    tokens: int = 0
    train_seconds: float = 0.0
    initial_val_loss: float | None = None
    val_loss: float | None = None
    recent_losses: list[float] = field(default_factory=list)


def encode(examples: Sequence[Example], tokenizer: PreTrainedTokenizerBase, max_len: int) -> tuple[list[Encoded], int]:
    """Token ids and labels; returns also how many examples were dropped (completion cut off by max_len)."""
    eos = tokenizer.eos_token_id
    out: list[Encoded] = []
    dropped = 0
    for e in examples:
        prompt = list(tokenizer(e.prompt)["input_ids"])
        completion = list(tokenizer(e.completion, add_special_tokens=False)["input_ids"])
        if eos is not None:
            completion.append(int(eos))
        ids = (prompt + completion)[:max_len]
        labels = ([-100] * len(prompt) + completion)[:max_len]
        if all(label == -100 for label in labels[1:]):
            dropped += 1
            continue
        out.append(Encoded(ids, labels))
    return out, dropped


class Batches:
    """Micro-batch `k` of optimizer step `t` (1-based): a pure function of (t, k) — resumable by construction."""

    def __init__(self, data: list[Encoded], batch_size: int, accumulation: int, pad_id: int, seed: int) -> None:
        self.data = data
        self.batch_size = batch_size
        self.accumulation = accumulation
        self.pad_id = pad_id
        self.seed = seed
        self.per_epoch = math.ceil(len(data) / batch_size)
        self._epoch = -1
        self._order: list[int] = []

    def indices(self, step: int, k: int) -> list[int]:
        import torch

        micro = (step - 1) * self.accumulation + k
        epoch, pos = divmod(micro, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._order = torch.randperm(len(self.data), generator=g).tolist()
            self._epoch = epoch
        return self._order[pos * self.batch_size : (pos + 1) * self.batch_size]

    def collate(self, items: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        import torch

        width = max(len(e.input_ids) for e in items)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(items), width), -100, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for i, e in enumerate(items):
            n = len(e.input_ids)
            ids[i, :n] = torch.tensor(e.input_ids)
            labels[i, :n] = torch.tensor(e.labels)
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    def step(self, step: int) -> list[dict[str, torch.Tensor]]:
        return [self.collate([self.data[i] for i in self.indices(step, k)]) for k in range(self.accumulation)]


def lr_multiplier(step: int, warmup: int, max_steps: int) -> float:
    """Linear warm-up to 1 over `warmup` steps, then linear decay; `step` is 1-based, never 0 at any step taken."""
    if warmup > 0 and step <= warmup:
        return step / warmup
    if max_steps <= warmup:
        return 1.0
    return max(0.0, (max_steps - step + 1) / (max_steps - warmup))


def token_losses(model: PreTrainedModel, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    """Summed next-token cross-entropy over the labelled positions of a batch."""
    import torch
    import torch.nn.functional as F

    ids = batch["input_ids"].to(device)
    mask = batch["attention_mask"].to(device)
    labels = batch["labels"].to(device)
    # On GPUs with bf16, the forward pass runs under autocast (weights and optimizer state stay fp32).
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=ids, attention_mask=mask).logits
    return F.cross_entropy(
        logits[:, :-1, :].reshape(-1, logits.size(-1)).float(),
        labels[:, 1:].reshape(-1),
        ignore_index=-100,
        reduction="sum",
    )


def label_count(batch: dict[str, torch.Tensor]) -> int:
    return int((batch["labels"][:, 1:] != -100).sum())


def evaluate(model: PreTrainedModel, batches: Batches, data: list[Encoded], device: torch.device) -> float | None:
    import torch

    if not data:
        return None
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(data), batches.batch_size):
            batch = batches.collate(data[start : start + batches.batch_size])
            total += float(token_losses(model, batch, device))
            count += label_count(batch)
    model.train()
    return total / max(1, count)


def make_optimizer(model: PreTrainedModel, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    import torch

    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)


def fetch_dataset(job: FinetuneJob, seed: int, git_timeout_s: float) -> Dataset:
    """The job's examples, split into training and validation (the clone is removed once read)."""
    with tempfile.TemporaryDirectory(prefix="forge-data-") as tmp:
        return load_dataset(
            job.data_repo,
            job.data_branch,
            job.data_path,
            job.validation_split,
            seed,
            Path(tmp),
            git_timeout_s,
        )


def encode_dataset(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: Dataset, events: Events
) -> tuple[list[Encoded], list[Encoded], int]:
    """The training and validation examples as tokens, and the padding id; emits the `data` event."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise PermanentError("the base model's tokenizer has neither a pad nor an eos token")
    max_len = min(int(getattr(model.config, "max_position_embeddings", MAX_SEQ_LEN) or MAX_SEQ_LEN), MAX_SEQ_LEN)
    train, dropped_train = encode(dataset.train, tokenizer, max_len)
    val, dropped_val = encode(dataset.validation, tokenizer, max_len)
    if not train:
        raise PermanentError(f"bad data: every training example's completion lies beyond {max_len} tokens")
    events.emit(
        "data",
        commit=dataset.commit,
        files=dataset.files,
        train_examples=len(train),
        validation_examples=len(val),
        dropped_too_long=dropped_train + dropped_val,
    )
    return train, val, int(pad_id)


def optimizer_step(
    model: PreTrainedModel,
    optimizer: torch.optim.Optimizer,
    batches: Batches,
    step: int,
    job: FinetuneJob,
    device: torch.device,
) -> tuple[float, float, list[dict[str, torch.Tensor]]]:
    """Optimizer step `step` (1-based): micro-batches, scheduled learning rate, clipping; (loss, lr, batches)."""
    import torch

    h = job.hyper
    lr = h.learning_rate * lr_multiplier(step, h.warmup_steps, job.max_steps)
    for group in optimizer.param_groups:
        group["lr"] = lr
    micro = batches.step(step)
    labelled = sum(label_count(b) for b in micro)
    loss_sum = 0.0
    for b in micro:
        loss = token_losses(model, b, device)
        (loss / max(1, labelled)).backward()
        loss_sum += float(loss.detach())
    torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum / max(1, labelled), lr, micro


def _resume_point(output_dir: Path, job: FinetuneJob, events: Events) -> ckpt.Checkpoint | None:
    for c in ckpt.candidates(output_dir):
        if c.state.get("job_id") != job.job_id or c.state.get("max_steps") != job.max_steps:
            events.emit("warning", message=f"ignoring checkpoint {c.path.name}: it belongs to another job or run")
            continue
        return c
    return None


def run_finetune(job: FinetuneJob, opts: RunOptions, events: Events, stop: StopFlag) -> dict[str, Any]:
    started = time.monotonic()
    out = opts.output_dir
    out.mkdir(parents=True, exist_ok=True)
    events.emit("start", pid=os.getpid(), job_id=job.job_id, attempt=opts.attempt, trainer_version=__version__)
    if job.model_source == "local" and not ckpt.candidates(out):
        check_local_model(job.model_name)  # fail fast, before cloning data and importing torch

    dataset = fetch_dataset(job, opts.seed, opts.git_timeout_s)
    stop.check("while fetching the data")

    import torch

    quiet_transformers()
    torch.manual_seed(opts.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    resume = _resume_point(out, job, events)
    if resume is not None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(resume.path)
        tokenizer = AutoTokenizer.from_pretrained(resume.path)
    else:
        model, tokenizer = load_base(job.model_name, job.model_source, job.model_revision)
    stop.check("while loading the model")
    model.to(device)
    model.train()

    train, val, pad_id = encode_dataset(model, tokenizer, dataset, events)
    h = job.hyper
    batches = Batches(train, h.batch_size, h.gradient_accumulation_steps, int(pad_id), opts.seed)
    optimizer = make_optimizer(model, h.learning_rate, h.weight_decay)

    log_file = out / ckpt.LOG_FILE
    state = TrainState(job.job_id, job.max_steps, dataset.fingerprint, dataset.commit)
    step = 0
    if resume is not None:
        ckpt.restore_optimizer(resume, optimizer)
        ckpt.restore_log(resume, out)
        events.attach_log(log_file)
        known = {k: v for k, v in resume.state.items() if k in TrainState.__dataclass_fields__}
        state = TrainState(**{**asdict(state), **known, "data_fingerprint": state.data_fingerprint})
        step = resume.step
        same_data = resume.state.get("data_fingerprint") == dataset.fingerprint
        events.emit("resume", from_step=step, checkpoint=resume.path.name, attempt=opts.attempt, same_data=same_data)
        if not same_data:
            events.emit("warning", message="the data changed since the checkpoint; training goes on with the new data")
    else:
        log_file.unlink(missing_ok=True)
        events.attach_log(log_file)
        events.emit(
            "config",
            job_id=job.job_id,
            base_model=job.model_name,
            max_steps=job.max_steps,
            hyperparameters=asdict(h),
            validation_split=job.validation_split,
            seed=opts.seed,
            device=str(device),
        )
        state.initial_val_loss = evaluate(model, batches, val, device)
        state.val_loss = state.initial_val_loss
        events.emit("eval", step=0, val_loss=state.initial_val_loss)

    eval_every = max(1, job.max_steps // 10)
    log_every = max(1, job.max_steps // 1000)
    start_step = step
    attempt_tokens = 0
    attempt_train_s = 0.0
    attempt_cpu_s = 0.0

    def save_checkpoint() -> Path:
        path = ckpt.save(out, step, model, tokenizer, optimizer, asdict(state))
        events.emit("checkpoint", step=step, path=f"{ckpt.CHECKPOINTS}/{path.name}")
        return path

    while step < job.max_steps:
        if stop.signal is not None:
            name = signal.Signals(stop.signal).name
            if job.save_checkpoints and step > 0:
                path = save_checkpoint()
                raise TransientError(
                    f"interrupted by {name} at step {step}; saved checkpoint {path.name} to resume from"
                )
            raise TransientError(
                f"interrupted by {name} at step {step}; no checkpoint (artifacts.save_checkpoints is false or no step "
                "was done yet): the next attempt starts over"
            )
        t0, cpu0 = time.perf_counter(), time.process_time()
        t = step + 1
        step_loss, lr, micro = optimizer_step(model, optimizer, batches, t, job, device)
        step = t
        step_tokens = sum(int(b["attention_mask"].sum()) for b in micro)
        elapsed = time.perf_counter() - t0
        attempt_train_s += elapsed
        attempt_cpu_s += time.process_time() - cpu0
        attempt_tokens += step_tokens
        state.tokens += step_tokens
        state.train_seconds += elapsed
        state.recent_losses = [*state.recent_losses, step_loss][-RECENT_LOSSES:]
        if not math.isfinite(step_loss):
            raise PermanentError(f"training diverged at step {step} (loss {step_loss}); lower the learning rate")
        if step == 1 or step % log_every == 0 or step == job.max_steps:
            events.emit(
                "progress",
                step=step,
                max_steps=job.max_steps,
                loss=round(step_loss, 6),
                lr=lr,
                tokens=state.tokens,
                tokens_per_second=round(attempt_tokens / attempt_train_s, 1) if attempt_train_s > 0 else None,
            )
        if step % eval_every == 0 or step == job.max_steps:
            state.val_loss = evaluate(model, batches, val, device)
            events.emit("eval", step=step, val_loss=state.val_loss)
        if job.save_checkpoints and step % job.checkpoint_interval_steps == 0 and step < job.max_steps:
            save_checkpoint()

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    reduction = None
    if state.initial_val_loss and state.val_loss is not None:
        reduction = 1 - state.val_loss / state.initial_val_loss
    metrics: dict[str, Any] = {
        "job_id": job.job_id,
        "attempt": opts.attempt,
        "steps": step,
        "max_steps": job.max_steps,
        "resumed_from_step": start_step if resume is not None else None,
        "steps_this_attempt": step - start_step,
        "train_loss": sum(state.recent_losses) / len(state.recent_losses) if state.recent_losses else None,
        "initial_val_loss": state.initial_val_loss,
        "val_loss": state.val_loss,
        "val_loss_reduction": reduction,
        "tokens": state.tokens,
        "tokens_this_attempt": attempt_tokens,
        "tokens_per_second": attempt_tokens / attempt_train_s if attempt_train_s > 0 else None,
        "train_seconds": attempt_train_s,
        "train_cpu_seconds": attempt_cpu_s,
        "train_seconds_all_attempts": state.train_seconds,
        "wall_time_seconds": time.monotonic() - started,
        "train_examples": len(train),
        "validation_examples": len(val),
        "data_commit": dataset.commit,
        "data_files": dataset.files,
        "base_model": job.model_name,
        "hyperparameters": asdict(h),
        "seed": opts.seed,
        "device": str(device),
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch_version": torch.__version__,
        "trainer_version": __version__,
    }
    (out / "metrics.json").write_text(dumps(metrics, indent=2) + "\n", encoding="utf-8")
    events.emit("metrics", **metrics)
    return metrics
