"""
trainer/bench/verify.py (npm run bench:verify): the trainer's time per GRPO step with rollout verification at
rl.verify_fraction 0, 0.25 and 1 (TOPLOC proofs and logprobs, one prefill per verified completion under the claimed
version: rollout_verify.py), in one run on the same tiny model. Honest rollouts (the reference server's Engine, with
proofs) are made outside the timed part; timed per step: the session's verification of the picked groups plus its
update. Prints a Markdown table for BENCHMARKS.md and the raw numbers as JSON (last line).

  .tools/venv/bin/python trainer/bench/verify.py [--steps N] [--prompts P] [--group G] [--tokens T] [--model DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=12)
    ap.add_argument("--model", default="")
    a = ap.parse_args()

    from forge_trainer.contract import Events
    from forge_trainer.grpo import GrpoConfig, GrpoSession, UpdateRequest
    from forge_trainer.model import init_tiny
    from forge_trainer.rollout_verify import RolloutVerifier, VerifyRequest
    from forge_trainer.serve import Engine, parse_request

    tmp = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    model = Path(a.model) if a.model else tmp / "model"
    if not a.model:
        init_tiny(model, seed=0)
    engine = Engine(model, "tiny")
    results: dict[str, list[float]] = {}
    verify_s: dict[str, list[float]] = {}
    checked: dict[str, int] = {}
    for fraction in (0.0, 0.25, 1.0):
        cfg = {
            "job_id": "bench",
            "session_id": f"bench-{fraction}",
            "base_model": {"name": str(model), "source": "local", "revision": "main"},
            "learning_rate": 1e-3,
            "clip_epsilon": 0.2,
            "kl_beta": 0.04,
            "max_off_policy_steps": 1,
            "checkpoint_interval_steps": 10**6,
            "max_steps": 10**6,
        }
        session = GrpoSession(
            GrpoConfig.from_json(cfg), tmp / f"s{fraction}", tmp / f"w{fraction}", Events(out=io.StringIO())
        )
        verifier = RolloutVerifier(session)
        pick = random.Random(1)
        times: list[float] = []
        vtimes: list[float] = []
        checked[str(fraction)] = 0
        for step in range(1, a.steps + 1):
            engine.load_weights(session.current().path, None)  # the rollouts of this step: the current version
            groups = []
            for p in range(a.prompts):
                prompt = f"reverse {'abcdefgh'[p % 8]}{'hgfedcba'[step % 8]}c:"
                body = {
                    "prompt": prompt,
                    "n": a.group,
                    "max_tokens": a.tokens,
                    "seed": step * 100 + p,
                    "logprobs": 0,
                    "toploc": True,
                }
                choices = engine.complete(parse_request(body, "tiny"))["choices"]
                samples = [
                    {
                        "token_ids": c["logprobs"]["token_ids"],
                        "logprobs": c["logprobs"]["token_logprobs"],
                        "reward": float(i % 2),
                        "toploc_proofs": c["toploc_proofs"],
                    }
                    for i, c in enumerate(choices)
                ]
                rid = f"r{step}.{p}"
                session.add_rollout(
                    rid, {"policy_version": session.version, "prompt": prompt, "samples": samples, "worker": "w"}
                )
                groups.append({"rollout_id": rid, "advantages": [1.0 if i % 2 else -1.0 for i in range(a.group)]})
            picked = [g["rollout_id"] for g in groups if pick.random() < fraction]
            start = time.perf_counter()
            answer = verifier.verify(VerifyRequest.from_json({"rollout_ids": picked}))
            vtimes.append(time.perf_counter() - start)
            checked[str(fraction)] += answer["checked"]
            session.update(UpdateRequest.from_json({"step": step, "groups": groups}))
            times.append(time.perf_counter() - start)
            if answer["rejected"]:
                sys.exit(f"an honest rollout was rejected: {answer['rejected']}")
        # The first step warms caches (and loads the verifier's model of the version): left out when there are more.
        results[str(fraction)] = times[1:] if len(times) > 1 else times
        verify_s[str(fraction)] = vtimes[1:] if len(vtimes) > 1 else vtimes
    base = statistics.median(results["0.0"])
    print("| verify_fraction | groups verified | verify s/step (median) | trainer s/step (median) | × fraction 0 |")  # noqa: RUF001 (the table of BENCHMARKS.md)
    print("|---|---|---|---|---|")
    for k, v in results.items():
        med = statistics.median(v)
        print(f"| {k} | {checked[k]} | {statistics.median(verify_s[k]):.3f} | {med:.3f} | {med / base:.2f} |")
    print(json.dumps({"args": vars(a), "seconds": results, "verify_seconds": verify_s, "checked": checked}))


if __name__ == "__main__":
    main()
