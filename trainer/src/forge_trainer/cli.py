"""
`forge-trainer`: the reference trainer's command line.

  forge-trainer run                 the contract entrypoint (docs/architecture.md §6): JOB_TYPE, FORGE_SPEC, ...
  forge-trainer finetune [...]      supervised finetuning; options default to the contract env
  forge-trainer eval [...]          the orchestrator's eval suite on a model, rows to FORGE_OUTPUT_DIR/evals.jsonl
  forge-trainer init-tiny --out D   a tiny local model with a byte-level tokenizer
  forge-trainer serve --model D     an OpenAI-compatible completions server
  forge-trainer grpo-server [...]   a GRPO trainer host's policy process (driven by workers/grpo.ts)
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

from forge_trainer import __version__
from forge_trainer.contract import EXIT_OK, EXIT_PERMANENT, Events, PermanentError, TrainerError, fail


def _env_defaults() -> None:
    """Set before torch or huggingface_hub are imported (they read them once): bounded hub waits, determinism."""
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "60")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (fixed seeds mean something)


def _env_path(env: Mapping[str, str], name: str, given: str | None) -> Path:
    value = given or env.get(name)
    if not value:
        raise PermanentError(f"{name} is not set (and no command-line option gives it)")
    return Path(value)


def _attempt(env: Mapping[str, str], given: int | None) -> int:
    if given is not None:
        return given
    raw = env.get("FORGE_ATTEMPT", "1")
    try:
        return int(raw)
    except ValueError as err:
        raise PermanentError(f"FORGE_ATTEMPT must be an integer, got {raw!r}") from err


def cmd_finetune(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from forge_trainer.finetune import RunOptions, StopFlag, run_finetune
    from forge_trainer.spec import finetune_job, load_spec_file

    stop = StopFlag()
    stop.install()
    spec = load_spec_file(_env_path(env, "FORGE_SPEC", args.spec))
    job = finetune_job(spec, env)
    if job.job_type != "finetune":
        raise PermanentError(f"the spec's job_type is {job.job_type!r}; `finetune` runs finetune jobs only")
    opts = RunOptions(
        output_dir=_env_path(env, "FORGE_OUTPUT_DIR", args.output_dir),
        attempt=_attempt(env, args.attempt),
        seed=args.seed,
        git_timeout_s=float(env.get("FORGE_GIT_TIMEOUT_SECONDS", "600")),
    )
    run_finetune(job, opts, Events(), stop)
    return EXIT_OK


def cmd_eval(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from forge_trainer.evaluate import run_eval
    from forge_trainer.spec import load_spec_file

    spec = load_spec_file(_env_path(env, "FORGE_SPEC", args.spec))
    if args.suite_dir:
        import base64
        import json

        files = {f.stem: f.read_text(encoding="utf-8") for f in sorted(Path(args.suite_dir).glob("*.json"))}
        suite_b64 = base64.b64encode(json.dumps(files).encode("utf-8")).decode("ascii")
    else:
        suite_b64 = env.get("FORGE_EVAL_SUITE_B64", "")
        if not suite_b64:
            raise PermanentError("FORGE_EVAL_SUITE_B64 is not set (and no --suite-dir gives the eval suite)")
    model = Path(args.model) if args.model else None
    run_eval(spec, env, _env_path(env, "FORGE_OUTPUT_DIR", args.output_dir), suite_b64, model, Events())
    return EXIT_OK


def cmd_run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from forge_trainer.spec import load_spec_file

    # The orchestrator asks for an evaluation (an eval job, or a finetune's EVALUATING step) with FORGE_TASK=eval.
    if env.get("FORGE_TASK") == "eval":
        return cmd_eval(argparse.Namespace(spec=None, output_dir=None, suite_dir=None, model=None), env)
    job_type = env.get("JOB_TYPE") or str(load_spec_file(_env_path(env, "FORGE_SPEC", None)).get("job_type", ""))
    if job_type == "finetune":
        return cmd_finetune(argparse.Namespace(spec=None, output_dir=None, attempt=None, seed=args.seed), env)
    if job_type == "eval":
        return cmd_eval(argparse.Namespace(spec=None, output_dir=None, suite_dir=None, model=None), env)
    if job_type == "rl":
        raise PermanentError(f"job type {job_type!r} is not implemented by this trainer version ({__version__})")
    raise PermanentError(f"unknown JOB_TYPE {job_type!r}")


def cmd_init_tiny(args: argparse.Namespace, _env: Mapping[str, str]) -> int:
    from forge_trainer.model import init_tiny

    out = Path(args.out)
    n = init_tiny(
        out, seed=args.seed, hidden_size=args.hidden_size, layers=args.layers, heads=args.heads, context=args.context
    )
    Events().emit("model", path=str(out), parameters=n)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, _env: Mapping[str, str]) -> int:
    from forge_trainer.serve import serve

    serve(
        Path(args.model),
        host=args.host,
        port=args.port,
        model_name=args.model_name,
        allow_weight_updates=args.allow_weight_updates,
        admin_token_file=Path(args.admin_token_file) if args.admin_token_file else None,
    )
    return EXIT_OK


def cmd_grpo_server(args: argparse.Namespace, _env: Mapping[str, str]) -> int:
    from forge_trainer.grpo_server import serve_grpo

    serve_grpo(
        Path(args.config),
        Path(args.state_dir),
        Path(args.work_dir),
        host=args.host,
        port=args.port,
        advertise_host=args.advertise_host,
    )
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    from forge_trainer.finetune import SEED

    p = argparse.ArgumentParser(prog="forge-trainer", description="Chrysalis Forge reference trainer")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the job described by the contract env (JOB_TYPE, FORGE_SPEC, ...)")
    run.add_argument("--seed", type=int, default=SEED)
    run.set_defaults(handler=cmd_run)

    ft = sub.add_parser("finetune", help="supervised finetuning of the spec's base model on its data")
    ft.add_argument("--spec", help="the job spec JSON (default: $FORGE_SPEC)")
    ft.add_argument("--output-dir", help="where outputs and checkpoints go (default: $FORGE_OUTPUT_DIR)")
    ft.add_argument("--attempt", type=int, help="attempt number (default: $FORGE_ATTEMPT or 1)")
    ft.add_argument("--seed", type=int, default=SEED)
    ft.set_defaults(handler=cmd_finetune)

    ev = sub.add_parser("eval", help="run the eval suite on a model; rows to <output-dir>/evals.jsonl")
    ev.add_argument("--spec", help="the job spec JSON (default: $FORGE_SPEC)")
    ev.add_argument("--output-dir", help="where evals.jsonl goes (default: $FORGE_OUTPUT_DIR)")
    ev.add_argument("--suite-dir", help="folder of <task_type>.json task files (default: $FORGE_EVAL_SUITE_B64)")
    ev.add_argument("--model", help="model directory (default: $FORGE_EVAL_MODEL, else the spec's base model)")
    ev.set_defaults(handler=cmd_eval)

    tiny = sub.add_parser("init-tiny", help="write a tiny random causal LM with a byte-level tokenizer")
    tiny.add_argument("--out", required=True, help="model directory to write")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--hidden-size", type=int, default=96)
    tiny.add_argument("--layers", type=int, default=3)
    tiny.add_argument("--heads", type=int, default=4)
    tiny.add_argument("--context", type=int, default=256, help="max positions")
    tiny.set_defaults(handler=cmd_init_tiny)

    srv = sub.add_parser("serve", help="OpenAI-compatible completions server for a model directory")
    srv.add_argument("--model", required=True, help="model directory (e.g. a finetune's FORGE_OUTPUT_DIR)")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed in the serving event)")
    srv.add_argument("--model-name", help="the model id clients use (default: the directory's name)")
    srv.add_argument(
        "--allow-weight-updates",
        action="store_true",
        help="enable POST /update_weights_from_disk (RL rollout workers load each policy version through it)",
    )
    srv.add_argument(
        "--admin-token-file",
        help="file holding the bearer token of weight updates (else FORGE_INFERENCE_ADMIN_TOKEN); required with "
        "--allow-weight-updates unless --host is loopback",
    )
    srv.set_defaults(handler=cmd_serve)

    grpo = sub.add_parser("grpo-server", help="hold one RL job's policy: GRPO updates, weights over HTTP, checkpoints")
    grpo.add_argument("--config", required=True, help="the session's JSON config (written by the host worker)")
    grpo.add_argument("--state-dir", required=True, help="the job's state folder (checkpoints, training log, final/)")
    grpo.add_argument("--work-dir", required=True, help="scratch folder (served weights), removed at exit")
    grpo.add_argument("--host", default="127.0.0.1")
    grpo.add_argument("--port", type=int, default=0, help="0 picks a free port (printed in the serving event)")
    grpo.add_argument("--advertise-host", help="the host name rollout workers reach this one by (default: --host)")
    grpo.set_defaults(handler=cmd_grpo_server)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    _env_defaults()
    args = parser().parse_args(argv)
    try:
        return int(args.handler(args, os.environ))
    except TrainerError as err:
        fail(str(err))
        Events().emit("error", kind=err.kind, message=str(err), exit_code=err.exit_code)
        return err.exit_code
    except Exception as err:  # an unexpected failure is a bug or a broken host: permanent, with the traceback
        traceback.print_exc()
        fail(f"unexpected {type(err).__name__}: {err}")
        return EXIT_PERMANENT


if __name__ == "__main__":
    sys.exit(main())
