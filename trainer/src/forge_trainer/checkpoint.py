"""
Checkpoints under FORGE_OUTPUT_DIR/checkpoints/step-<8 digits>/: the model (safetensors), its tokenizer, the
optimizer state, the RNG states, the training log so far, and trainer_state.json, written last. A checkpoint is
built in a hidden sibling folder and renamed into place, so a folder named step-* is always complete. The local
backend carries a failed attempt's checkpoints/ into the next attempt's output folder; the newest one that loads
is where training resumes.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
LOG_FILE = "training_log.jsonl"
KEEP_CHECKPOINTS = 2


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    state: dict[str, Any]


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def save(
    output_dir: Path,
    step: int,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    log_lines: list[str] | None = None,
) -> Path:
    """`log_lines`: the training log up to this step as the caller knows it; None copies output_dir's log file."""
    import torch

    root = output_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / "rng.pt")
    log = output_dir / LOG_FILE
    if log_lines is not None:
        (tmp / LOG_FILE).write_text("".join(line + "\n" for line in log_lines), encoding="utf-8")
    elif log.exists():
        shutil.copyfile(log, tmp / LOG_FILE)
    (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=2) + "\n", encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    _prune(root, keep=KEEP_CHECKPOINTS)
    return final


def _prune(root: Path, keep: int) -> None:
    complete = sorted(p for p in root.glob("step-*") if (p / STATE_FILE).is_file())
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in root.glob(".tmp-*"):
        if not tmp.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(tmp, ignore_errors=True)  # left by a process that died mid-save


def candidates(output_dir: Path) -> list[Checkpoint]:
    """Complete checkpoints, newest first (their state files parse and name a step)."""
    found: list[Checkpoint] = []
    for path in (output_dir / CHECKPOINTS).glob("step-*"):
        try:
            state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
            step = int(state["step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        found.append(Checkpoint(path=path, step=step, state=state))
    return sorted(found, key=lambda c: c.step, reverse=True)


def restore_optimizer(checkpoint: Checkpoint, optimizer: torch.optim.Optimizer) -> None:
    import torch

    optimizer.load_state_dict(torch.load(checkpoint.path / "optimizer.pt", weights_only=True, map_location="cpu"))
    rng = torch.load(checkpoint.path / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def restore_log(checkpoint: Checkpoint, output_dir: Path) -> list[str]:
    """The training log as it was at the checkpoint (lines about steps that are now redone are dropped); its lines."""
    saved = checkpoint.path / LOG_FILE
    target = output_dir / LOG_FILE
    if saved.exists():
        text = saved.read_text(encoding="utf-8")
        target.write_text(text, encoding="utf-8")
        return text.splitlines()
    target.unlink(missing_ok=True)
    return []
