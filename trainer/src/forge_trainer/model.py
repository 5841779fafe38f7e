"""
Models and tokenizers: the tiny local model (a small Llama with a byte-level tokenizer, made without any download)
and loading a base model from a local directory or, when online, the Hugging Face hub.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from forge_trainer.contract import PermanentError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EOS_TOKEN = "<|endoftext|>"  # noqa: S105 - a token of the vocabulary, not a secret
HUB_PROBE_TIMEOUT_S = 5.0


def quiet_transformers() -> None:
    """No progress bars or advisory warnings on our stdout/stderr: stdout carries JSON events."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of the 256 byte values to printable characters (the byte-level BPE alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def byte_tokenizer() -> PreTrainedTokenizerBase:
    """One token per byte (ids 0-255 are the byte values) plus <|endoftext|> (256) as eos, bos and pad."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: b for b, ch in _bytes_to_unicode().items()}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOS_TOKEN])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS_TOKEN, bos_token=EOS_TOKEN, pad_token=EOS_TOKEN, model_max_length=256
    )


def init_tiny(
    out: Path,
    *,
    seed: int = 0,
    hidden_size: int = 96,
    layers: int = 3,
    heads: int = 4,
    context: int = 256,
) -> int:
    """Writes a randomly initialised tiny causal LM (≈330k parameters) and its tokenizer to `out`; returns the count."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    quiet_transformers()
    tokenizer = byte_tokenizer()
    tokenizer.model_max_length = context
    eos = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    if hidden_size % heads:
        raise PermanentError(f"--hidden-size {hidden_size} must be a multiple of --heads {heads}")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 8 // 3 // 16 * 16 or 16,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=context,
        tie_word_embeddings=True,
        attention_dropout=0.0,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def _hub_reachable(endpoint: str) -> str | None:
    """None when a TCP connection to the hub opens within the timeout, else why not. DNS cannot hang us either."""
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    result: list[str | None] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S):
                result.append(None)
        except OSError as err:
            result.append(f"{host}:{port}: {err}")

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(HUB_PROBE_TIMEOUT_S + 1)
    return result[0] if result else f"{host}:{port}: no answer within {HUB_PROBE_TIMEOUT_S:.0f} s"


def check_local_model(name: str) -> Path:
    """A `local` base model is a directory with a config.json: checked before anything heavy is imported."""
    path = Path(name)
    if not (path / "config.json").is_file():
        raise PermanentError(f"base_model.name {name!r} (source local) is not a model directory with a config.json")
    return path


def load_tokenizer(name: str | Path, **kwargs: Any) -> PreTrainedTokenizerBase:
    """
    AutoTokenizer; a tokenizer saved by transformers 5 ("tokenizer_class": "TokenizersBackend") under transformers 4
    (the P2PFL venv's) loads as the fast tokenizer of its tokenizer.json, which it is.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        return AutoTokenizer.from_pretrained(name, **kwargs)
    except ValueError as err:
        if "TokenizersBackend" not in str(err):
            raise
        return PreTrainedTokenizerFast.from_pretrained(name, **kwargs)


def load_base(name: str, source: str, revision: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """
    The base model and its tokenizer. `local`: `name` is a model directory. `huggingface`: `name` at `revision` from
    the local cache first, else from the hub — and when the hub cannot be reached, a permanent error within seconds,
    never a hang.
    """
    quiet_transformers()
    from transformers import AutoModelForCausalLM

    if source == "local":
        path = check_local_model(name)
        try:
            return AutoModelForCausalLM.from_pretrained(path), load_tokenizer(path)
        except (OSError, ValueError) as err:
            raise PermanentError(f"cannot load the local model {name}: {err}") from err

    # source == "huggingface"
    try:
        model = AutoModelForCausalLM.from_pretrained(name, revision=revision, local_files_only=True)
        return model, load_tokenizer(name, revision=revision, local_files_only=True)
    except (OSError, ValueError):
        pass  # not cached: download below
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise PermanentError(
            f"base model {name}@{revision} (source huggingface) is not in the local cache and HF_HUB_OFFLINE is set"
        )
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    problem = _hub_reachable(endpoint)
    if problem is not None:
        raise PermanentError(
            f"base model {name}@{revision} (source huggingface) is not cached and the hub cannot be reached "
            f"({problem}); run where {endpoint} is reachable, pre-fill the cache (HF_HOME), or use source local"
        )
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "60")
    try:
        model = AutoModelForCausalLM.from_pretrained(name, revision=revision)
        return model, load_tokenizer(name, revision=revision)
    except (OSError, ValueError) as err:
        raise PermanentError(f"cannot load base model {name}@{revision} from the hub: {err}") from err
