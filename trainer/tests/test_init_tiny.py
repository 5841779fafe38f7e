"""init-tiny: a small causal LM with a byte-level tokenizer that transformers loads back."""

from __future__ import annotations

import json
from pathlib import Path

from forge_trainer.model import EOS_TOKEN


def test_tiny_model_loads_back_and_runs(tiny_model: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (tiny_model / name).is_file(), name
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    params = sum(p.numel() for p in model.parameters())
    assert 100_000 < params < 1_000_000  # "a few hundred thousand"
    assert json.loads((tiny_model / "config.json").read_text())["model_type"] == "llama"

    # Byte-level: every byte is one token, any text round-trips.
    text = "héllo, wörld ✓"
    ids = tokenizer(text)["input_ids"]
    assert ids == list(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text
    assert tokenizer.eos_token == EOS_TOKEN
    assert tokenizer.eos_token_id == 256

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(tokenizer))
    assert torch.isfinite(logits).all()


def test_init_tiny_is_deterministic(tmp_path: Path, tiny_model: Path) -> None:
    from forge_trainer.model import init_tiny

    init_tiny(tmp_path / "again", seed=0)
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (tiny_model / "model.safetensors").read_bytes()
