"""Pure pieces, in process: schedule, data order, splits, JSONL parsing, argument checks."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from forge_trainer.contract import PermanentError
from forge_trainer.data import Example, check_git_args, read_jsonl, split
from forge_trainer.finetune import Batches, Encoded, lr_multiplier
from forge_trainer.serve import RequestError, parse_request


def test_lr_schedule() -> None:
    assert [lr_multiplier(t, 4, 10) for t in range(1, 5)] == [0.25, 0.5, 0.75, 1.0]
    decay = [lr_multiplier(t, 4, 10) for t in range(5, 11)]
    assert decay[0] == 1.0 and decay[-1] == pytest.approx(1 / 6)
    assert all(a > b for a, b in pairwise(decay))
    assert lr_multiplier(1, 0, 1) == 1.0
    assert lr_multiplier(7, 10, 5) == 0.7  # warm-up longer than the run


def test_batches_are_a_function_of_step_and_cover_each_epoch() -> None:
    data = [Encoded([i, i], [-100, i]) for i in range(10)]
    a = Batches(data, batch_size=3, accumulation=2, pad_id=0, seed=1)
    b = Batches(data, batch_size=3, accumulation=2, pad_id=0, seed=1)
    # Any step can be asked first (a resumed run starts in the middle): same answer.
    assert b.indices(3, 1) == a.indices(3, 1)
    epoch = [i for step in (1, 2) for k in (0, 1) for i in a.indices(step, k)]
    assert sorted(epoch) == list(range(10))  # 4 micro-batches of 3, 3, 3, 1 = one epoch
    assert a.indices(3, 0) != a.indices(1, 0) or a.indices(3, 1) != a.indices(1, 1)  # reshuffled next epoch
    batch = a.collate([Encoded([1, 2, 3], [-100, 2, 3]), Encoded([4], [-100])])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [-100, -100, -100]]


def test_split_is_seeded_and_disjoint() -> None:
    examples = [Example(str(i), "x", f"f:{i}") for i in range(50)]
    train, val = split(examples, 0.2, seed=3)
    assert len(val) == 10 and len(train) == 40
    assert {e.prompt for e in train}.isdisjoint({e.prompt for e in val})
    assert split(examples, 0.2, seed=3) == (train, val)
    assert split(examples, 0.0, seed=3) == (examples, [])
    assert len(split(examples, 0.001, seed=3)[1]) == 1  # a non-zero split validates on at least one example


def test_read_jsonl_reports_every_bad_line(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join(["{}"] * 7 + ['{"prompt": "p", "completion": "c"}']) + "\n")
    with pytest.raises(PermanentError) as err:
        read_jsonl(f, "data/d.jsonl")
    msg = str(err.value)
    assert 'data/d.jsonl, line 1: field "prompt" is missing' in msg
    assert "line 5" in msg and "line 6" not in msg and "(and 2 more)" in msg
    f.write_text('{"prompt": "p", "completion": "c", "extra": 1}\n\n')
    assert read_jsonl(f, "d") == [Example("p", "c", "d:1")]


@pytest.mark.parametrize(
    ("repo", "branch", "path"),
    [
        ("ext::sh", "main", "d"),
        ("-u", "main", "d"),
        ("http://example.com/r.git", "main", "d"),
        ("file:///r", "-b", "d"),
        ("file:///r", "main", "/etc"),
        ("file:///r", "main", "a/../../b"),
    ],
)
def test_git_argument_checks(repo: str, branch: str, path: str) -> None:
    with pytest.raises(PermanentError):
        check_git_args(repo, branch, path)


def test_git_argument_checks_accept_the_usual_forms() -> None:
    for repo in ("https://github.com/u/r.git", "ssh://git@host/r", "git@github.com:u/r.git", "file:///tmp/r"):
        check_git_args(repo, "jobs/abc", "datasets/file-edit/")


def test_parse_request_defaults() -> None:
    req = parse_request({"prompt": "hi"}, "m")
    got = (req.prompts, req.n, req.max_tokens, req.temperature, req.logprobs, req.stop)
    assert got == (["hi"], 1, 16, 1.0, None, [])
    with pytest.raises(RequestError):
        parse_request({"prompt": "hi", "n": True}, "m")
    with pytest.raises(RequestError):
        parse_request([], "m")
