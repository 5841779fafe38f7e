"""
The trainer host's check of rollouts (POST /v1/verify-rollouts, grpo_server.py): for each rollout the host picked
(a fraction of each step's, operator config rl.verify_fraction; activities/rl/verify.ts), one prefill of every
completion under the policy version the rollout claims, against the TOPLOC proofs and the logprobs it carries
(toploc_proofs.verify_samples). The session keeps the newest `keep_versions` versions' weights (at least the staleness
bound's worth), so a claimed version within the bound can be loaded. One it does not have — a session resumed from a
checkpoint holds only the versions since — is left unverified (listed in `unverified`), not held against its worker:
the rollouts made before a trainer host was lost are honest work; a version older than the bound is refused by the
update itself.

The request also carries the run's refused workers (rl.max_rejections reached): from then on the session refuses
their uploads (403), not only their groups at update time.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from forge_trainer.toploc_proofs import (
    DEFAULT_LOGPROB_TOLERANCE,
    SampleToCheck,
    verify_samples,
)

if TYPE_CHECKING:
    from pathlib import Path

    from transformers import PreTrainedModel

    from forge_trainer.grpo import GrpoSession


@dataclass(frozen=True)
class VerifyRequest:
    rollout_ids: list[str]
    refused_workers: list[str]
    logprob_tolerance: float

    @staticmethod
    def from_json(body: Any) -> VerifyRequest:
        from forge_trainer.grpo_protocol import UpdateRefused

        if not isinstance(body, dict):
            raise UpdateRefused("the body must be a JSON object", status=400)
        ids = body.get("rollout_ids", [])
        refused = body.get("refused_workers", [])
        tol = body.get("logprob_tolerance", DEFAULT_LOGPROB_TOLERANCE)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise UpdateRefused("rollout_ids must be a list of rollout ids", status=400)
        if not isinstance(refused, list) or not all(isinstance(w, str) for w in refused):
            raise UpdateRefused("refused_workers must be a list of worker identities", status=400)
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol <= 100:
            raise UpdateRefused("logprob_tolerance must be a number in (0, 100]", status=400)
        return VerifyRequest(ids, refused, float(tol))


def load_weights_into(model: PreTrainedModel, weights: Path) -> bool:
    """
    A version's weights (safetensors) into a model of the same architecture; False when they do not cover it — a
    parameter neither in the file nor tied to one that is (the old version's value would stay), or a name it does not
    have — and the caller builds the model afresh. OSError when the file is gone.
    """
    from safetensors.torch import load_file

    device = next(model.parameters()).device
    state = load_file(str(weights), device=str(device))
    own = model.state_dict()
    if any(k not in own or own[k].shape != t.shape for k, t in state.items()):
        return False
    loaded = {own[k].data_ptr() for k in state}
    if any(own[k].data_ptr() not in loaded for k in own if k not in state):
        return False
    model.load_state_dict(state, strict=False)
    return True


class RolloutVerifier:
    """The policy versions' models (a few, loaded on demand from the session's published weights) and the check."""

    def __init__(self, session: GrpoSession, cache: int = 2) -> None:
        self.session = session
        self.models: OrderedDict[int, PreTrainedModel] = OrderedDict()
        self.cache = cache
        self.lock = threading.Lock()  # one verification at a time: they share the cached models

    def _model(self, version: int) -> PreTrainedModel | None:
        if version in self.models:
            self.models.move_to_end(version)
            return self.models[version]
        v = self.session.weights(version)
        if v is None or not v.path.exists():
            return None
        from transformers import AutoModelForCausalLM

        # Each step's rollouts claim a new version: the least recent model's module takes its weights, which costs a
        # copy, where building a model costs its allocation and initialisation too (about 15x on the tiny model).
        reused = self.models.popitem(last=False)[1] if len(self.models) >= self.cache else None
        try:
            if reused is not None and load_weights_into(reused, v.path):
                model = reused
            else:
                model = AutoModelForCausalLM.from_pretrained(v.path.parent).to(self.session.device).eval()
        except OSError:  # the version was dropped (keep_versions) while it loaded
            return None
        self.models[version] = model
        while len(self.models) > self.cache:
            self.models.popitem(last=False)
        return model

    def verify(self, req: VerifyRequest) -> dict[str, Any]:
        """{rejected: {<id>: {reason, detail, worker}}, checked, unverified, seconds}; ids the session does not hold
        are skipped (the update refuses them itself)."""
        s = self.session
        with s.rollouts_lock:
            s.refused_workers.update(req.refused_workers)
            found = [s.rollouts[i] for i in req.rollout_ids if i in s.rollouts]
        start = time.monotonic()
        rejected: dict[str, dict[str, Any]] = {}
        unverified: list[str] = []
        with self.lock:
            for r in sorted(found, key=lambda r: r.policy_version):
                model = self._model(r.policy_version)
                if model is None:
                    unverified.append(r.rollout_id)
                    continue
                checks = [SampleToCheck(x.token_ids, x.logprobs, x.proofs) for x in r.samples]
                failed = verify_samples(model, r.prompt_ids, checks, req.logprob_tolerance)
                if failed:
                    i, reason, detail = failed
                    rejected[r.rollout_id] = {
                        "reason": reason,
                        "detail": f"completion {i} under policy version {r.policy_version}: {detail}",
                        "worker": r.worker,
                    }
        checked = len(found) - len(unverified)
        seconds = round(time.monotonic() - start, 6)
        return {"rejected": rejected, "checked": checked, "unverified": unverified, "seconds": seconds}
