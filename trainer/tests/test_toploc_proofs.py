"""TOPLOC proofs (forge_trainer.toploc_proofs): build and verify, on hidden states and on a real tiny model."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from forge_trainer import toploc_proofs as tp


def hidden(positions: int, width: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(positions, width, generator=g)


def test_polynomial_interpolates_its_points() -> None:
    xs, ys = [3, 17, 40, 1000, 65000], [1, 65496, 123, 0, 40000]
    coeffs = tp.newton_coefficients(xs, ys)
    assert [tp.evaluate(coeffs, x) for x in xs] == ys


def test_proof_format_is_toplocs() -> None:
    # toploc 0.1.6 README: topk=4 proofs are 10 bytes, starting with the modulus 65497 big-endian (b"\xff\xd9").
    proofs = tp.build_proofs(hidden(40, width=4))
    raw = base64.b64decode(proofs[0])
    assert raw[:2] == b"\xff\xd9"
    assert len(raw) == 2 + 2 * 4
    assert len(proofs) == 2  # 32 positions per proof


def test_same_states_verify_and_jitter_is_tolerated() -> None:
    h = hidden(70)
    proofs = tp.build_proofs(h)
    assert len(proofs) == 3
    assert tp.check_proofs(h, proofs).ok
    assert tp.check_proofs(h * 1.01, proofs).ok  # 1 %: within TOPLOC's mantissa tolerance


def test_other_states_fail() -> None:
    proofs = tp.build_proofs(hidden(40))
    bad = tp.check_proofs(hidden(40, seed=1), proofs)
    assert not bad.ok
    assert "exponent mismatches" in bad.detail
    assert not tp.check_proofs(hidden(40) * 1.5, proofs).ok  # scaled: other mantissas and exponents
    assert not tp.check_proofs(hidden(40), proofs[:1]).ok  # a proof short
    assert "unreadable" in tp.check_proofs(hidden(40), ["***", proofs[1]]).detail


def test_a_changed_position_fails_its_chunk() -> None:
    h = hidden(64)
    proofs = tp.build_proofs(h)
    forged = h.clone()
    forged[40] = hidden(1, seed=9)[0] * 3
    check = tp.check_proofs(forged, proofs)
    assert not check.ok
    assert check.detail.startswith("proof 1 ")


def test_model_prefill_verifies_its_own_generation(tiny_model: Path) -> None:
    """The inference server's proofs (KV-cached decoding, batched) verify against one prefill of the same model."""
    from forge_trainer.serve import Engine, parse_request

    engine = Engine(tiny_model, "tiny")
    body = {"prompt": "reverse abc:", "n": 2, "max_tokens": 12, "seed": 7, "logprobs": 0, "toploc": True}
    req = parse_request(body, "tiny")
    answer = engine.complete(req)
    prompt_ids = list(engine.tokenizer("reverse abc:")["input_ids"])
    for choice in answer["choices"]:
        lp = choice["logprobs"]
        sample = tp.SampleToCheck(lp["token_ids"], lp["token_logprobs"], choice["toploc_proofs"])
        assert tp.verify_sample(engine.model, prompt_ids, sample, tp.DEFAULT_LOGPROB_TOLERANCE) is None
        ids = list(lp["token_ids"])
        ids[len(ids) // 2] = (ids[len(ids) // 2] + 1) % engine.model.config.vocab_size
        altered = tp.SampleToCheck(ids, lp["token_logprobs"], choice["toploc_proofs"])
        why = tp.verify_sample(engine.model, prompt_ids, altered, tp.DEFAULT_LOGPROB_TOLERANCE)
        assert why is not None
        assert why[0] in (tp.TOPLOC_MISMATCH, tp.LOGPROB_MISMATCH)
        inflated = tp.SampleToCheck(lp["token_ids"], [x / 2 for x in lp["token_logprobs"]], choice["toploc_proofs"])
        assert tp.verify_sample(engine.model, prompt_ids, inflated, 0.05)[0] == tp.LOGPROB_MISMATCH  # type: ignore[index]
        missing = tp.SampleToCheck(lp["token_ids"], lp["token_logprobs"], None)
        assert tp.verify_sample(engine.model, prompt_ids, missing, 0.05)[0] == tp.PROOF_MISSING  # type: ignore[index]


def test_a_groups_completions_prefilled_together_verify_as_one_by_one(tiny_model: Path) -> None:
    """Prefilled PREFILL_BATCH at a time (right-padded, completions of different lengths): the same states as one pass
    each, an honest group passes, and the first bad sample is the one named."""
    from forge_trainer.serve import Engine, parse_request

    engine = Engine(tiny_model, "tiny")
    n = tp.PREFILL_BATCH + 3  # two forward passes, the second one partial
    body = {"prompt": "reverse abc:", "n": n, "max_tokens": 12, "seed": 3, "logprobs": 0, "toploc": True}
    choices = engine.complete(parse_request(body, "tiny"))["choices"]
    prompt_ids = list(engine.tokenizer("reverse abc:")["input_ids"])
    samples = [
        tp.SampleToCheck(c["logprobs"]["token_ids"], c["logprobs"]["token_logprobs"], c["toploc_proofs"])
        for c in choices
    ]
    # Lengths differ (some completions end early at EOS); make sure of it with a cut one, re-proved.
    cut = samples[1].token_ids[: max(1, len(samples[1].token_ids) // 2)]
    hidden_cut, logprobs_cut = tp.prefill(engine.model, prompt_ids, cut)
    samples[1] = tp.SampleToCheck(cut, logprobs_cut.tolist(), tp.build_proofs(hidden_cut))
    assert len({len(s.token_ids) for s in samples}) > 1
    together = tp.prefill_many(engine.model, prompt_ids, [s.token_ids for s in samples])
    for s, (hidden, logprobs) in zip(samples, together, strict=True):
        alone_hidden, alone_logprobs = tp.prefill(engine.model, prompt_ids, s.token_ids)
        assert torch.allclose(hidden, alone_hidden, atol=1e-4)
        assert torch.allclose(logprobs, alone_logprobs, atol=1e-4)
    assert tp.verify_samples(engine.model, prompt_ids, samples, tp.DEFAULT_LOGPROB_TOLERANCE) is None

    bad = n - 2  # in the second pass
    forged = list(samples)
    forged[bad] = tp.SampleToCheck(samples[bad].token_ids, [x / 2 for x in samples[bad].logprobs], samples[bad].proofs)
    failed = tp.verify_samples(engine.model, prompt_ids, forged, 0.05)
    assert failed is not None
    assert failed[:2] == (bad, tp.LOGPROB_MISMATCH)
    forged[0] = tp.SampleToCheck(samples[0].token_ids, samples[0].logprobs, None)
    assert tp.verify_samples(engine.model, prompt_ids, forged, 0.05)[:2] == (0, tp.PROOF_MISSING)  # type: ignore[index]


@pytest.mark.parametrize("bad", [["x" * 5000], "proof", [1]])
def test_parse_proofs_refuses_malformed(bad: object) -> None:
    with pytest.raises(ValueError, match="toploc_proofs"):
        tp.parse_proofs({"toploc_proofs": bad})
    assert tp.parse_proofs({}) is None


@pytest.mark.parametrize("cache", [2, 1])
def test_session_verifies_by_claimed_version_and_refuses_uploads_of_refused_workers(
    tiny_model: Path, tmp_path: Path, cache: int
) -> None:
    """The trainer session's check (rollout_verify.py): an honest rollout of version 0 passes; after one update (a
    real step, lr high enough to move the tiny model), a completion of version 0 claimed as version 1 fails; a worker
    named refused has its next upload turned away (403). With a cache of one model, version 1's weights are loaded
    into version 0's module: the stale completion fails all the same."""
    import io

    from forge_trainer.contract import Events
    from forge_trainer.grpo import GrpoSession
    from forge_trainer.grpo_protocol import GrpoConfig, UpdateRefused, UpdateRequest
    from forge_trainer.rollout_verify import RolloutVerifier, VerifyRequest
    from forge_trainer.serve import Engine, parse_request
    from test_grpo import write_config

    raw = json.loads(write_config(tmp_path / "a.json", tiny_model, "a", learning_rate=0.05, kl_beta=0.0).read_text())
    session = GrpoSession(GrpoConfig.from_json(raw), tmp_path / "state", tmp_path / "wa", Events(out=io.StringIO()))
    verifier = RolloutVerifier(session, cache=cache)
    engine = Engine(tiny_model, "tiny")  # version 0's weights: the base model

    def upload(rid: str, version: int, worker: str) -> None:
        body = {"prompt": "reverse abc:", "n": 2, "max_tokens": 10, "seed": 3, "logprobs": 0, "toploc": True}
        req = parse_request(body, "t")
        choices = engine.complete(req)["choices"]
        samples = [
            {
                "token_ids": c["logprobs"]["token_ids"],
                "logprobs": c["logprobs"]["token_logprobs"],
                "reward": float(i),
                "toploc_proofs": c["toploc_proofs"],
            }
            for i, c in enumerate(choices)
        ]
        body = {"policy_version": version, "prompt": "reverse abc:", "samples": samples, "worker": worker}
        session.add_rollout(rid, body)

    def check(rid: str, refused: list[str] | None = None) -> dict[str, Any]:
        body = {"rollout_ids": [rid], "refused_workers": refused or []}
        return verifier.verify(VerifyRequest.from_json(body))

    upload("honest", 0, "w1")
    assert check("honest") == {"rejected": {}, "checked": 1, "unverified": [], "seconds": pytest.approx(0, abs=600)}
    groups = [{"rollout_id": "honest", "advantages": [-1.0, 1.0]}]
    session.update(UpdateRequest.from_json({"step": 1, "groups": groups}))
    assert session.version == 1
    upload("stale", 1, "w2")  # made with version 0's weights, claimed as version 1
    rejected = check("stale", refused=["w2"])["rejected"]
    assert rejected["stale"]["reason"] in (tp.TOPLOC_MISMATCH, tp.LOGPROB_MISMATCH)
    assert rejected["stale"]["worker"] == "w2"
    assert "policy version 1" in rejected["stale"]["detail"]
    with pytest.raises(UpdateRefused, match="refused for the rest of this run") as err:
        upload("after", 0, "w2")
    assert err.value.status == 403
    upload("other", 1, "w3")  # another worker still uploads
    # A version the session no longer holds (as after a resume from a checkpoint): left unverified, not rejected.
    verifier.models.clear()
    session.versions.pop(0)
    upload("old", 0, "w3")
    assert check("old") == {"rejected": {}, "checked": 0, "unverified": ["old"], "seconds": pytest.approx(0, abs=600)}


def test_a_cached_model_takes_another_versions_weights_only_if_they_cover_it(tiny_model: Path, tmp_path: Path) -> None:
    """rollout_verify.load_weights_into: the verifier's least recent model takes the next version's weights (tied
    lm_head included) and then equals that version built afresh; a file that misses a parameter or names one the model
    lacks is refused (the caller builds the model afresh), and a file gone is an OSError."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    from forge_trainer.rollout_verify import load_weights_into

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    other = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.01 * torch.randn_like(p))
    other.save_pretrained(tmp_path / "v1")
    weights = tmp_path / "v1" / "model.safetensors"
    assert load_weights_into(model, weights)
    fresh = AutoModelForCausalLM.from_pretrained(tmp_path / "v1").state_dict()
    mine = model.state_dict()
    assert sorted(mine) == sorted(fresh)
    assert [k for k in mine if not torch.equal(mine[k], fresh[k])] == []

    state = load_file(str(weights))
    before = {k: t.clone() for k, t in model.state_dict().items()}
    missing = {k: t for k, t in state.items() if ".layers.0.mlp." not in k}
    save_file(missing, str(tmp_path / "missing.safetensors"))
    assert not load_weights_into(model, tmp_path / "missing.safetensors")
    save_file({**state, "extra.weight": torch.zeros(2)}, str(tmp_path / "extra.safetensors"))
    assert not load_weights_into(model, tmp_path / "extra.safetensors")
    assert all(torch.equal(before[k], t) for k, t in model.state_dict().items())  # refused: nothing was loaded
    with pytest.raises(OSError, match=r"gone\.safetensors"):
        load_weights_into(model, tmp_path / "gone.safetensors")
