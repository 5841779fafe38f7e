"""
TOPLOC proofs of a completion's hidden states (Ong et al., "TOPLOC: A Locality Sensitive Hashing Scheme for Trustless
Verifiable Inference", arXiv 2501.16007), byte-compatible with PyPI `toploc` 0.1.6's proofs. That package is not a
dependency: its wheel's C++ extensions are built against an older torch and do not import with ours (torch 2.13:
"undefined symbol: _ZNK2at10TensorBase14const_data_ptrIfLi0EEEPKT_v"), and its sdist compiles them at install time
(a C++ toolchain and torch headers on every host). The scheme is small; it is implemented here in plain Python.

The inference server (serve.py, `"toploc": true`) keeps the last layer's hidden state at every position that produced
a generated token (the prompt's last position, then each generated token but the last), cast to bfloat16. TOPLOC
splits them into chunks of DECODE_BATCH positions, takes each chunk's TOPK largest values by magnitude and encodes
(index, bfloat16 bits) as the interpolating polynomial modulo the prime 65497: a few hundred bytes per chunk, carried
base64 with the sample.

The trainer host checks a rollout with one prefill of prompt + completion under the policy version the rollout claims
(verify_samples; a prompt's completions are prefilled together): the proofs must match the prefill's hidden states
within TOPLOC's thresholds (the paper's: a few exponent mismatches, small mantissa errors, which tolerate the kernels'
nondeterminism but not another model, prompt or completion), and the reported logprobs must be the prefill's within
`logprob_tolerance`. The last generated token's hidden state is in no proof (nothing after it was computed); the
logprob check covers that token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

# The reference settings of the paper and of INTELLECT-2's validators: 32 positions per proof, top 128 values.
DECODE_BATCH = 32
TOPK = 128
# TOPLOC's acceptance thresholds for bfloat16 (the paper's Table 2 regime): per proof, at most this many of the top-k
# exponents differ, and the mantissa errors of the others stay small. Scaled with topk when a model is narrower.
MAX_EXP_MISMATCHES = 8
MAX_MANT_ERR_MEAN = 10.0
MAX_MANT_ERR_MEDIAN = 8.0
# The reported logprobs against the host's prefill: max absolute difference per token.
DEFAULT_LOGPROB_TOLERANCE = 0.05
# Completions of one prompt prefilled per forward pass by the verifier.
PREFILL_BATCH = 8

# Why a rollout fails verification (the run's rl.rejected_rollouts reasons; common/rl-rejections.ts names them too).
PROOF_MISSING = "proof-missing"
TOPLOC_MISMATCH = "toploc-mismatch"
LOGPROB_MISMATCH = "logprob-mismatch"


def topk_for(hidden_size: int) -> int:
    """The proofs' k: TOPK, or the hidden size of a narrower model (a chunk can be one position)."""
    return min(TOPK, hidden_size)


def build_proofs(hidden: torch.Tensor) -> list[str]:
    """Base64 TOPLOC proofs of `hidden` ([positions, hidden_size]: one row per generated token)."""
    k = topk_for(int(hidden.shape[1]))
    proofs = []
    for chunk in _chunks(hidden):
        idx = chunk.abs().topk(k).indices
        proofs.append(encode_proof(idx.tolist(), _bits(chunk[idx])))
    return proofs


@dataclass(frozen=True)
class ProofCheck:
    ok: bool
    detail: str


def check_proofs(hidden: torch.Tensor, proofs: list[str]) -> ProofCheck:
    """`proofs` against the verifier's own hidden states ([positions, hidden_size])."""
    positions, width = int(hidden.shape[0]), int(hidden.shape[1])
    expected = -(-positions // DECODE_BATCH)
    if len(proofs) != expected:
        return ProofCheck(False, f"{len(proofs)} proofs for {positions} positions (expected {expected})")
    if not proofs:
        return ProofCheck(True, "no positions")
    k = topk_for(width)
    try:
        results = [compare(chunk, decode_proof(p), k) for chunk, p in zip(_chunks(hidden), proofs, strict=True)]
    except ValueError as err:
        return ProofCheck(False, f"unreadable proof: {err}")
    max_exp = max(1, round(MAX_EXP_MISMATCHES * k / TOPK))
    for i, r in enumerate(results):
        if r.exp_mismatches > max_exp or r.mant_err_mean > MAX_MANT_ERR_MEAN or r.mant_err_median > MAX_MANT_ERR_MEDIAN:
            return ProofCheck(
                False,
                f"proof {i} (positions {i * DECODE_BATCH}-{min(positions, (i + 1) * DECODE_BATCH) - 1}): "
                f"{r.exp_mismatches} exponent mismatches of {k} (max {max_exp}), mantissa error mean "
                f"{r.mant_err_mean:.2f} median {r.mant_err_median:.2f} (max {MAX_MANT_ERR_MEAN}/{MAX_MANT_ERR_MEDIAN})",
            )
    return ProofCheck(True, f"{len(results)} proofs match")


def prefill(model: PreTrainedModel, prompt_ids: list[int], token_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """
    One forward pass over prompt + completion: the last layer's hidden states at the positions that produced each
    completion token ([T, hidden]) and those tokens' logprobs ([T]), under the raw distribution (temperature 1).
    """
    return prefill_many(model, prompt_ids, [token_ids])[0]


def prefill_many(
    model: PreTrainedModel, prompt_ids: list[int], completions: list[list[int]]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """
    prefill() of each completion of one prompt, PREFILL_BATCH of them per forward pass: one pass per completion cost
    more in calls than in arithmetic. Right-padded and masked: the attention is causal, so no real position sees a pad.
    """
    import torch

    device = next(model.parameters()).device
    plen = len(prompt_ids)
    results: list[tuple[torch.Tensor, torch.Tensor]] = []
    for start in range(0, len(completions), PREFILL_BATCH):
        batch = completions[start : start + PREFILL_BATCH]
        width = max(len(t) for t in batch)
        ids = torch.tensor([prompt_ids + t + [0] * (width - len(t)) for t in batch], dtype=torch.long, device=device)
        mask = torch.tensor(
            [[1] * (plen + len(t)) + [0] * (width - len(t)) for t in batch], dtype=torch.long, device=device
        )
        with torch.inference_mode():
            out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        for b, t in enumerate(batch):
            hidden = out.hidden_states[-1][b, plen - 1 : plen - 1 + len(t)].float()
            logits = out.logits[b, plen - 1 : plen - 1 + len(t)].float()
            targets = torch.tensor(t, dtype=torch.long, device=device).unsqueeze(-1)
            results.append((hidden, torch.log_softmax(logits, dim=-1).gather(-1, targets).squeeze(-1)))
    return results


@dataclass(frozen=True)
class SampleToCheck:
    token_ids: list[int]
    logprobs: list[float]
    proofs: list[str] | None


def verify_sample(
    model: PreTrainedModel, prompt_ids: list[int], s: SampleToCheck, logprob_tolerance: float
) -> tuple[str, str] | None:
    """(reason, detail) when the sample fails, else None. The proofs first: they bind the completion to the model."""
    failed = verify_samples(model, prompt_ids, [s], logprob_tolerance)
    return None if failed is None else (failed[1], failed[2])


def verify_samples(
    model: PreTrainedModel, prompt_ids: list[int], samples: list[SampleToCheck], logprob_tolerance: float
) -> tuple[int, str, str] | None:
    """(index, reason, detail) of the first of one prompt's samples that fails, else None (prefilled together)."""
    checked = [s for s in samples if s.token_ids and s.proofs is not None]
    prefilled = iter(prefill_many(model, prompt_ids, [s.token_ids for s in checked]) if checked else [])
    for i, s in enumerate(samples):
        if not s.token_ids:
            continue
        if s.proofs is None:
            return i, PROOF_MISSING, "the sample carries no TOPLOC proofs (its inference server must produce them)"
        hidden, own = next(prefilled)
        proof = check_proofs(hidden, s.proofs)
        if not proof.ok:
            return i, TOPLOC_MISMATCH, proof.detail
        diffs = (own.cpu() - _tensor(s.logprobs)).abs()
        worst = int(diffs.argmax())
        if float(diffs[worst]) > logprob_tolerance:
            return (
                i,
                LOGPROB_MISMATCH,
                f"token {worst}: reported logprob {s.logprobs[worst]:.4f}, the policy's own {float(own[worst]):.4f} "
                f"(tolerance {logprob_tolerance})",
            )
    return None


def _tensor(xs: list[float]) -> torch.Tensor:
    import torch

    return torch.tensor(xs, dtype=torch.float32)


def parse_proofs(sample: dict[str, Any]) -> list[str] | None:
    """A sample's `toploc_proofs` (a list of base64 strings), None when absent; ValueError when malformed."""
    raw = sample.get("toploc_proofs")
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(p, str) and 0 < len(p) <= 4096 for p in raw):
        raise ValueError("toploc_proofs must be a list of base64 strings")
    return list(raw)


# ---- the TOPLOC encoding (toploc 0.1.6: C/csrc/ndd.cpp, poly.cpp, utils.cpp; python poly.py) ------------------------

MOD = 65497  # the largest prime below 2^16: coefficients fit two bytes


@dataclass(frozen=True)
class Comparison:
    """toploc's VerificationResult: over the verifier's top-k, exponents that differ, and the others' mantissa error."""

    exp_mismatches: int
    mant_err_mean: float
    mant_err_median: float


def _chunks(hidden: torch.Tensor) -> list[torch.Tensor]:
    flat = hidden.detach().to("cpu").bfloat16()
    return [flat[i : i + DECODE_BATCH].reshape(-1) for i in range(0, int(flat.shape[0]), DECODE_BATCH)]


def _bits(values: torch.Tensor) -> list[int]:
    import torch

    return [int(b) & 0xFFFF for b in values.bfloat16().view(torch.int16).tolist()]


def _injective_modulus(xs: list[int]) -> int:
    for m in range(MOD, 0, -1):
        if len({x % m for x in xs}) == len(xs):
            return m
    raise ValueError("no injective modulus")  # pragma: no cover (distinct indices always have one)


def newton_coefficients(xs: list[int], ys: list[int]) -> list[int]:
    """The interpolating polynomial's coefficients (ascending) modulo MOD, by Newton's divided differences."""
    n = len(xs)
    dd = [y % MOD for y in ys]
    for k in range(1, n):
        for i in range(n - 1, k - 1, -1):
            dd[i] = (dd[i] - dd[i - 1]) * pow((xs[i] - xs[i - k]) % MOD, -1, MOD) % MOD
    coeffs = [0] * n
    factor = [0] * n
    factor[0] = 1
    for i in range(n):
        for j in range(i + 1):
            coeffs[j] = (coeffs[j] + dd[i] * factor[j]) % MOD
        if i + 1 < n:  # factor *= (x - xs[i])
            for j in range(i + 1, 0, -1):
                factor[j] = (factor[j - 1] - xs[i] * factor[j]) % MOD
            factor[0] = (-xs[i] * factor[0]) % MOD
    return coeffs


def evaluate(coeffs: list[int], x: int) -> int:
    result = 0
    for c in reversed(coeffs):
        result = (result * x + c) % MOD
    return result


def encode_proof(xs: list[int], ys: list[int]) -> str:
    """base64 of: the modulus (2 bytes, big-endian), then each coefficient (2 bytes, big-endian)."""
    import base64

    modulus = _injective_modulus(xs)
    coeffs = newton_coefficients([x % modulus for x in xs], ys)
    raw = modulus.to_bytes(2, "big") + b"".join(c.to_bytes(2, "big") for c in coeffs)
    return base64.b64encode(raw).decode("ascii")


def decode_proof(text: str) -> list[int]:
    import base64
    import binascii

    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as err:
        raise ValueError(f"not base64: {err}") from err
    if len(raw) < 4 or len(raw) % 2:
        raise ValueError(f"{len(raw)} bytes is not a proof (2 + 2 per coefficient)")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(2, len(raw), 2)]


def compare(chunk: torch.Tensor, coeffs: list[int], k: int) -> Comparison:
    """The verifier's top-k of `chunk` against what the proof's polynomial gives at the same indices."""
    from statistics import mean, median

    idx = chunk.abs().topk(min(k, int(chunk.numel()))).indices
    own = _bits(chunk[idx])
    claimed = [evaluate(coeffs, int(i)) for i in idx.tolist()]
    exp_mismatches, mant_errs = 0, []
    for a, b in zip(own, claimed, strict=True):
        if (a & 0x7F80) != (b & 0x7F80):
            exp_mismatches += 1
        else:
            mant_errs.append(abs((a & 0x7F) - (b & 0x7F)))
    if not mant_errs:
        return Comparison(exp_mismatches, float(2**64), float(2**64))
    return Comparison(exp_mismatches, float(mean(mant_errs)), float(median(mant_errs)))
