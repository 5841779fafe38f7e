"""
The GRPO objective (pure; see grpo.py's docstring for the formulas) and the learning-rate schedule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


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
