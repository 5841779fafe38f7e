"""serve: the OpenAI-compatible completions API over a finetuned model."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from conftest import TRAINER, Trained


def call(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def server(trained: Trained) -> Any:
    proc = subprocess.Popen(
        [*TRAINER, "serve", "--model", str(trained.output), "--port", "0", "--model-name", "tiny-reverse"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        event = json.loads(proc.stdout.readline())
        assert event["event"] == "serving", proc.stderr.read() if proc.stderr else ""
        yield event["url"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0


def test_health_and_models(server: str) -> None:
    assert call(f"{server}/health") == (200, {"status": "ok", "model": "tiny-reverse", "weight_version": "base"})
    status, models = call(f"{server}/v1/models")
    assert status == 200
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["tiny-reverse"]


def test_n_completions_with_logprobs(server: str) -> None:
    body = {"model": "tiny-reverse", "prompt": "reverse abcd:", "n": 3, "max_tokens": 8, "temperature": 1.0,
            "logprobs": 2, "seed": 7}  # fmt: skip
    status, resp = call(f"{server}/v1/completions", body)
    assert status == 200, resp
    assert resp["object"] == "text_completion" and resp["model"] == "tiny-reverse"
    assert [c["index"] for c in resp["choices"]] == [0, 1, 2]
    for choice in resp["choices"]:
        lp = choice["logprobs"]
        assert choice["finish_reason"] in ("stop", "length")
        assert 1 <= len(lp["tokens"]) <= 8
        assert len(lp["token_logprobs"]) == len(lp["tokens"]) == len(lp["top_logprobs"]) == len(lp["text_offset"])
        assert all(v <= 0 for v in lp["token_logprobs"])
        assert all(1 <= len(top) <= 2 and all(v <= 0 for v in top.values()) for top in lp["top_logprobs"])
        # Each sampled token's logprob is at most the best alternative's.
        pairs = zip(lp["token_logprobs"], lp["top_logprobs"], strict=True)
        assert all(v <= max(top.values()) + 1e-6 for v, top in pairs)
    usage = resp["usage"]
    assert usage["prompt_tokens"] == len(b"reverse abcd:")
    assert usage["completion_tokens"] == sum(len(c["logprobs"]["tokens"]) for c in resp["choices"])
    # The same seed gives the same samples.
    assert call(f"{server}/v1/completions", body)[1]["choices"] == resp["choices"]


def test_greedy_completion_learned_the_task(server: str) -> None:
    status, resp = call(f"{server}/v1/completions", {"prompt": "reverse abc:", "max_tokens": 5, "temperature": 0})
    assert status == 200
    [choice] = resp["choices"]
    assert choice["logprobs"] is None
    assert choice["text"].startswith(" ")  # the completions all start with a space


def test_prompt_list_and_stop(server: str) -> None:
    body = {"prompt": ["reverse ab:", "reverse cd:"], "n": 2, "max_tokens": 6, "stop": ["\n"], "seed": 1}
    status, resp = call(f"{server}/v1/completions", body)
    assert status == 200
    assert [c["index"] for c in resp["choices"]] == [0, 1, 2, 3]
    assert all("\n" not in c["text"] for c in resp["choices"])


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"prompt": "x", "n": 0}, 400, "n"),
        ({"prompt": "x", "temperature": 3}, 400, "temperature"),
        ({"prompt": "x", "logprobs": 99}, 400, "logprobs"),
        ({"prompt": 5}, 400, "prompt"),
        ({"prompt": "x", "max_tokens": 10_000}, 400, "max_tokens"),
        ({"prompt": "x", "stream": True}, 400, "stream"),
        ({"prompt": "x", "model": "other"}, 404, "model"),
    ],
)
def test_bad_requests_get_openai_errors(server: str, body: dict[str, Any], status: int, param: str) -> None:
    got, resp = call(f"{server}/v1/completions", body)
    assert got == status
    assert resp["error"]["param"] == param
    assert resp["error"]["type"] == "invalid_request_error"


def test_serve_refuses_a_missing_model(tmp_path: Path) -> None:
    done = subprocess.run([*TRAINER, "serve", "--model", str(tmp_path)], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "not a model directory" in done.stderr
