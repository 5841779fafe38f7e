"""
An OpenAI-compatible completions server for a model directory (the subset evals and RL use; vLLM serves the same
API on GPU hosts):

  POST /v1/completions   prompt (string or list of strings), n, max_tokens, temperature, top_p, logprobs, seed, stop
  GET  /v1/models
  GET  /health           also names the loaded weights (`weight_version`)
  POST /update_weights_from_disk   {"model_path", "weight_version"?}: load other weights of the same architecture
                         (SGLang's endpoint of that name; only with --allow-weight-updates). RL rollout workers load
                         each policy version with it. It takes an admin bearer token (FORGE_INFERENCE_ADMIN_TOKEN, or
                         FORGE_SERVE_ADMIN_TOKEN, or --admin-token-file), checked before the body is read; without one
                         the server refuses to start with --allow-weight-updates unless it listens on loopback only.
At most FORGE_SERVE_MAX_CONNECTIONS connections (default 64) are served at once; beyond that 503.

`logprobs` are those of the model's raw distribution (temperature 1, no top-p), as vLLM reports by default: what a
policy-gradient update needs. One request computes at a time; a request with a `seed` is reproducible.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from forge_trainer.contract import Events, PermanentError
from forge_trainer.httpbounds import BoundedHTTPServer, bearer_ok, is_loopback

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_N = 128
MAX_LOGPROBS = 20


class RequestError(Exception):
    def __init__(self, message: str, param: str | None = None, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.param = param
        self.status = status


@dataclass(frozen=True)
class CompletionRequest:
    prompts: list[str]
    n: int
    max_tokens: int
    temperature: float
    top_p: float
    logprobs: int | None
    seed: int | None
    stop: list[str]
    # Each choice also carries `toploc_proofs`: TOPLOC proofs of its hidden states (toploc_proofs.py), which the RL
    # trainer host checks (an extension: other servers ignore the field, and the host then rejects what it checks).
    toploc: bool = False


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RequestError(f"{key} must be a number in [{low}, {high}]", key)
    return float(value)


def _integer(body: dict[str, Any], key: str, default: int | None, low: int, high: int) -> int | None:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(f"{key} must be an integer in [{low}, {high}]", key)
    return value


def parse_request(body: Any, served: str) -> CompletionRequest:
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    model = body.get("model")
    if model is not None and model != served:
        raise RequestError(f"The model `{model}` does not exist.", "model", HTTPStatus.NOT_FOUND)
    for unsupported in ("stream", "echo"):
        if body.get(unsupported):
            raise RequestError(f"{unsupported} is not supported by this server", unsupported)
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise RequestError("prompt must be a string or a non-empty list of strings", "prompt")
    stop = body.get("stop")
    stops = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > 4:
        raise RequestError("stop must be a non-empty string or a list of up to 4 of them", "stop")
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    if top_p <= 0:
        raise RequestError("top_p must be in (0, 1]", "top_p")
    return CompletionRequest(
        prompts=prompts,
        n=int(_integer(body, "n", 1, 1, MAX_N) or 1),
        max_tokens=int(_integer(body, "max_tokens", 16, 0, 1_000_000) or 0),
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=top_p,
        logprobs=_integer(body, "logprobs", None, 0, MAX_LOGPROBS),
        seed=_integer(body, "seed", None, -(2**63), 2**63 - 1),
        stop=stops,
        toploc=body.get("toploc") is True,
    )


@dataclass
class Sample:
    ids: list[int]
    logprobs: list[float]
    top: list[dict[int, float]]
    finish_reason: str
    # The last layer's hidden state at each position that produced a token (only when proofs are asked for).
    hidden: list[torch.Tensor] | None = None


class Engine:
    """The model, its tokenizer and a lock: generation is one request at a time."""

    def __init__(self, model_dir: Path, name: str) -> None:
        if not (model_dir / "config.json").is_file():
            raise PermanentError(f"--model {model_dir} is not a model directory with a config.json")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from forge_trainer.model import quiet_transformers

        quiet_transformers()
        self.name = name
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(model_dir).to(self.device).eval()
        self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(model_dir)
        self.context = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        self.created = int(time.time())
        self.lock = threading.Lock()
        self.model_dir = model_dir
        self.weight_version = "base"

    def load_weights(self, model_path: Path, weight_version: str | None) -> None:
        """
        Swaps in the weights of `model_path` (a folder with model.safetensors, or that file): same architecture as the
        served model, whose config and tokenizer stay. Requests in flight finish on the old weights.
        """
        from transformers import AutoModelForCausalLM

        weights = model_path if model_path.is_file() else model_path / "model.safetensors"
        if not weights.is_file():
            raise RequestError(f"{weights} does not exist", "model_path")
        with tempfile.TemporaryDirectory(prefix="forge-weights-") as tmp:
            for name in ("config.json", "generation_config.json"):
                if (self.model_dir / name).is_file():
                    shutil.copyfile(self.model_dir / name, Path(tmp) / name)
            (Path(tmp) / "model.safetensors").symlink_to(weights.resolve())
            try:
                model = AutoModelForCausalLM.from_pretrained(tmp).to(self.device).eval()
            except (OSError, ValueError, RuntimeError) as err:
                raise RequestError(f"cannot load {weights}: {err}", "model_path") from err
        with self.lock:
            self.model = model
            self.weight_version = weight_version or str(weights)

    def sample(self, prompt_ids: list[int], req: CompletionRequest, generator: torch.Generator) -> list[Sample]:
        import torch

        n = req.n
        eos = self.tokenizer.eos_token_id
        samples = [Sample([], [], [], "length", [] if req.toploc else None) for _ in range(n)]
        if req.max_tokens == 0:
            return samples
        done = [False] * n
        ids = torch.tensor([prompt_ids] * n, dtype=torch.long, device=self.device)
        past = None
        with torch.inference_mode():
            for _ in range(req.max_tokens):
                out = self.model(input_ids=ids, past_key_values=past, use_cache=True, output_hidden_states=req.toploc)
                past = out.past_key_values
                logits = out.logits[:, -1, :].float()
                logprobs = torch.log_softmax(logits, dim=-1)
                nxt = self._choose(logits, req, generator)
                top = torch.topk(logprobs, req.logprobs) if req.logprobs else None
                for i in range(n):
                    if done[i]:
                        continue
                    token = int(nxt[i])
                    s = samples[i]
                    if s.hidden is not None:
                        s.hidden.append(out.hidden_states[-1][i, -1].float().cpu())
                    s.ids.append(token)
                    s.logprobs.append(float(logprobs[i, token]))
                    if top is not None:
                        s.top.append({int(t): float(v) for t, v in zip(top.indices[i], top.values[i], strict=True)})
                    if token == eos or self._hit_stop(s.ids, req.stop):
                        done[i], s.finish_reason = True, "stop"
                if all(done):
                    break
                ids = nxt.unsqueeze(-1)
        return samples

    def _hit_stop(self, ids: list[int], stops: list[str]) -> bool:
        return bool(stops) and any(st in self.tokenizer.decode(ids) for st in stops)

    @staticmethod
    def _choose(logits: torch.Tensor, req: CompletionRequest, generator: torch.Generator) -> torch.Tensor:
        import torch

        if req.temperature == 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits / req.temperature, dim=-1)
        if req.top_p < 1:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            keep = sorted_p.cumsum(dim=-1) - sorted_p < req.top_p  # always keeps the most likely token
            sorted_p = sorted_p * keep
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)

    def complete(self, req: CompletionRequest) -> dict[str, Any]:
        import torch

        choices: list[dict[str, Any]] = []
        prompt_tokens = completion_tokens = 0
        with self.lock:
            generator = torch.Generator()
            if req.seed is not None:
                generator.manual_seed(req.seed)
            else:
                generator.seed()
            for p_index, prompt in enumerate(req.prompts):
                prompt_ids = list(self.tokenizer(prompt)["input_ids"])
                if not prompt_ids:
                    raise RequestError("the prompt is empty after tokenization", "prompt")
                if len(prompt_ids) + req.max_tokens > self.context:
                    raise RequestError(
                        f"This model's maximum context length is {self.context} tokens. However, you requested "
                        f"{len(prompt_ids) + req.max_tokens} tokens ({len(prompt_ids)} in the prompt, "
                        f"{req.max_tokens} for the completion).",
                        "max_tokens",
                    )
                prompt_tokens += len(prompt_ids)
                for i, s in enumerate(self.sample(prompt_ids, req, generator)):
                    completion_tokens += len(s.ids)
                    choices.append(self._choice(p_index * req.n + i, s, req))
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _choice(self, index: int, s: Sample, req: CompletionRequest) -> dict[str, Any]:
        ids = s.ids
        if s.finish_reason == "stop" and ids and ids[-1] == self.tokenizer.eos_token_id:
            ids = ids[:-1]  # the end-of-text token is not part of the text
        text = self.tokenizer.decode(ids)
        if req.stop:
            cut = min((text.find(st) for st in req.stop if st in text), default=-1)
            if cut >= 0:
                text = text[:cut]
        choice: dict[str, Any] = {"index": index, "text": text, "logprobs": None, "finish_reason": s.finish_reason}
        if s.hidden is not None:
            import torch

            from forge_trainer.toploc_proofs import build_proofs

            choice["toploc_proofs"] = build_proofs(torch.stack(s.hidden)) if s.hidden else []
        if req.logprobs is not None:
            tokens = [self.tokenizer.decode([t]) for t in s.ids]
            offsets, pos = [], 0
            for tok in tokens:
                offsets.append(pos)
                pos += len(tok)
            choice["logprobs"] = {
                "tokens": tokens,
                "token_logprobs": s.logprobs,
                "top_logprobs": [{self.tokenizer.decode([t]): v for t, v in top.items()} for top in s.top]
                if req.logprobs > 0
                else None,
                "text_offset": offsets,
                "token_ids": s.ids,
            }
        return choice


def _error_body(message: str, status: HTTPStatus, param: str | None = None) -> dict[str, Any]:
    kind = "invalid_request_error" if status < HTTPStatus.INTERNAL_SERVER_ERROR else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def admin_token_of(env: Mapping[str, str], token_file: Path | None = None) -> str:
    """The weight-update token: --admin-token-file, else FORGE_INFERENCE_ADMIN_TOKEN, else FORGE_SERVE_ADMIN_TOKEN."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise PermanentError(f"cannot read --admin-token-file {token_file}: {err}") from err
    else:
        token = env.get("FORGE_INFERENCE_ADMIN_TOKEN") or env.get("FORGE_SERVE_ADMIN_TOKEN") or ""
    if token and len(token) < 16:
        raise PermanentError("the inference admin token must be 16 characters or more: set a longer one")
    return token


def check_weight_updates(host: str, allow_weight_updates: bool, admin_token: str) -> None:
    """Weight updates without an admin token only on loopback: anyone who reaches the port could swap the model."""
    if allow_weight_updates and not admin_token and not is_loopback(host):
        raise PermanentError(
            f"--allow-weight-updates on --host {host} needs an admin token: set FORGE_INFERENCE_ADMIN_TOKEN (or "
            "--admin-token-file), or listen on 127.0.0.1"
        )


def make_handler(
    engine: Engine, allow_weight_updates: bool = False, admin_token: str | None = None
) -> type[BaseHTTPRequestHandler]:
    if admin_token is None:
        admin_token = admin_token_of(os.environ)

    class Handler(BaseHTTPRequestHandler):
        server_version = "forge-trainer"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: request lines on stderr would drown the trainer's own messages

        def _send(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/health":
                health = {"status": "ok", "model": engine.name, "weight_version": engine.weight_version}
                self._send(HTTPStatus.OK, health)
            elif path == "/v1/models":
                model = {"id": engine.name, "object": "model", "created": engine.created, "owned_by": "forge"}
                self._send(HTTPStatus.OK, {"object": "list", "data": [model]})
            else:
                self._send(HTTPStatus.NOT_FOUND, _error_body(f"no route GET {path}", HTTPStatus.NOT_FOUND))

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                missing = HTTPStatus.LENGTH_REQUIRED
                self._send(missing, _error_body("Content-Length required", missing))
                return
            if length < 0 or length > MAX_BODY_BYTES:
                self.close_connection = True
                too_big = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
                self._send(too_big, _error_body(f"body over {MAX_BODY_BYTES} bytes", too_big))
                return
            weights = path == "/update_weights_from_disk" and allow_weight_updates
            if weights and admin_token and not bearer_ok(self.headers.get("Authorization"), admin_token):
                self.close_connection = True  # refused on the headers: its body is never read
                unauthorized = HTTPStatus.UNAUTHORIZED
                self._send(unauthorized, _error_body("missing or wrong bearer token", unauthorized))
                return
            raw = self.rfile.read(length)
            if weights:
                self._update_weights(raw)
                return
            if path != "/v1/completions":
                self._send(HTTPStatus.NOT_FOUND, _error_body(f"no route POST {path}", HTTPStatus.NOT_FOUND))
                return
            try:
                try:
                    body = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as err:
                    raise RequestError(f"the body is not valid JSON: {err}") from err
                self._send(HTTPStatus.OK, engine.complete(parse_request(body, engine.name)))
            except RequestError as err:
                self._send(err.status, _error_body(str(err), err.status, err.param))
            except Exception as err:  # a bug must not kill the server: answer 500 and keep serving
                status = HTTPStatus.INTERNAL_SERVER_ERROR
                self._send(status, _error_body(f"{type(err).__name__}: {err}", status))

        def _update_weights(self, raw: bytes) -> None:
            try:
                body = json.loads(raw)
                path = body.get("model_path") if isinstance(body, dict) else None
                version = body.get("weight_version") if isinstance(body, dict) else None
                if not isinstance(path, str) or not path:
                    raise RequestError("model_path must be a non-empty string", "model_path")
                if version is not None and not isinstance(version, str):
                    raise RequestError("weight_version must be a string", "weight_version")
                engine.load_weights(Path(path), version)
                self._send(HTTPStatus.OK, {"success": True, "message": f"loaded {path}", "weight_version": version})
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                bad = HTTPStatus.BAD_REQUEST
                self._send(bad, {"success": False, **_error_body(f"the body is not valid JSON: {err}", bad)})
            except RequestError as err:
                self._send(err.status, {"success": False, **_error_body(str(err), err.status, err.param)})

    return Handler


def serve(
    model_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    model_name: str | None = None,
    allow_weight_updates: bool = False,
    admin_token_file: Path | None = None,
) -> None:
    """Serves until SIGTERM or SIGINT; prints {"event":"serving","url":...} once it listens."""
    admin_token = admin_token_of(os.environ, admin_token_file)
    check_weight_updates(host, allow_weight_updates, admin_token)  # before the model loads: fail fast
    connections = os.environ.get("FORGE_SERVE_MAX_CONNECTIONS", "64")
    if not connections.isdigit() or int(connections) < 1:
        raise PermanentError(f"FORGE_SERVE_MAX_CONNECTIONS must be a positive integer, got {connections!r}")
    engine = Engine(model_dir, model_name or model_dir.resolve().name)
    handler = make_handler(engine, allow_weight_updates, admin_token)
    httpd = BoundedHTTPServer((host, port), handler, int(connections))

    def stop(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    bound_host, bound_port = httpd.server_address[:2]
    url = f"http://{bound_host!s}:{bound_port}"
    Events().emit("serving", url=url, host=str(bound_host), port=int(bound_port), model=engine.name)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
