"""The rollout texts a trainer host re-scores (POST /v1/rollout-texts): decoded as the inference server returns them."""

from __future__ import annotations

from typing import Any, cast

from forge_trainer.grpo_protocol import Rollout, Sample, decode_completion, parse_rollout, rollout_view


class Letters:
    """A stand-in tokenizer: token i is the i-th letter, 26 is end-of-text."""

    eos_token_id = 26

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) - 97 for c in text if c.isalpha()]}

    def decode(self, ids: list[int]) -> str:
        return "".join("<eos>" if i == 26 else chr(97 + i) for i in ids)


def test_a_final_end_of_text_token_is_not_part_of_the_text() -> None:
    tok = cast(Any, Letters())
    assert decode_completion(tok, [2, 1, 0, 26]) == "cba"
    assert decode_completion(tok, [2, 26, 0]) == "c<eos>a"
    assert decode_completion(tok, []) == ""


def test_the_view_keeps_the_uploaded_prompt_texts_and_rewards() -> None:
    tok = cast(Any, Letters())
    body = {
        "policy_version": 0,
        "prompt": "reverse abc:",
        "samples": [
            {"token_ids": [2, 1, 0, 26], "logprobs": [-0.1, -0.2, -0.3, -0.4], "reward": 1.0},
            {"token_ids": [0], "logprobs": [-1.0], "reward": 0.25},
        ],
    }
    r = parse_rollout("r1", body, tok, vocab=27)
    assert rollout_view(r, tok) == {"prompt": "reverse abc:", "texts": ["cba", "a"], "rewards": [1.0, 0.25]}
    by_ids = Rollout("r2", 0, [1, 2], [Sample([0], [-1.0], 0.0)], 1)
    assert rollout_view(by_ids, tok)["prompt"] is None
