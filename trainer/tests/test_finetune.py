"""finetune end to end through the contract entrypoint (`forge-trainer run`), on data in a real git repository."""

from __future__ import annotations

import json
from itertools import pairwise

from conftest import Trained


def test_outputs_follow_the_contract(trained: Trained) -> None:
    out = trained.output
    for name in ("model.safetensors", "config.json", "tokenizer.json", "training_log.jsonl", "metrics.json"):
        assert (out / name).is_file(), name
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)

    progress = trained.run.events("progress")
    assert [p["step"] for p in progress] == list(range(1, 61))
    assert all(p["max_steps"] == 60 and isinstance(p["loss"], float) for p in progress)
    assert [c["step"] for c in trained.run.events("checkpoint")] == [20, 40]
    assert len(trained.run.events("metrics")) == 1
    # The newest checkpoints are kept.
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000020", "step-00000040"]

    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["event"] == "progress"] == list(range(1, 61))
    assert all("time" in r for r in log)


def test_validation_loss_drops_by_at_least_30_percent(trained: Trained) -> None:
    m = trained.metrics
    assert m["steps"] == 60
    assert m["train_examples"] == 180
    assert m["validation_examples"] == 20  # validation_split 0.1 of 200
    assert m["val_loss"] <= 0.7 * m["initial_val_loss"], m
    assert m["tokens"] > 0
    assert m["tokens_per_second"] > 0
    assert m["wall_time_seconds"] >= m["train_seconds"] > 0
    assert m["train_loss"] is not None
    assert len(m["data_commit"]) == 40


def test_hyperparameters_are_honoured(trained: Trained) -> None:
    """Warm-up then linear decay of the spec's learning rate; batch x accumulation examples per step."""
    progress = trained.run.events("progress")
    lr = [p["lr"] for p in progress]
    base = trained.spec["hyperparameters"]["learning_rate"]
    assert abs(lr[0] - base / 5) < 1e-12  # step 1 of a 5-step warm-up
    assert abs(lr[4] - base) < 1e-12  # warm-up done
    assert all(a > b for a, b in pairwise(lr[5:]))  # then decaying
    assert lr[-1] > 0
    config = trained.run.events("config")[0]
    assert config["hyperparameters"] == trained.spec["hyperparameters"]
    # 16 examples of ~15-20 tokens per optimizer step.
    tokens_per_step = trained.metrics["tokens"] / 60
    assert 16 * 12 < tokens_per_step < 16 * 25
