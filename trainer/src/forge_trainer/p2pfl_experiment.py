"""
A federated finetune as a P2PFL experiment: the `p2pfl` backend's trainer (activities/backends/p2pfl/p2pfl.ts).

Runs under the trainer contract like `forge-trainer run`: reads FORGE_SPEC, DATA_REPO/DATA_BRANCH/DATA_PATH,
FORGE_OUTPUT_DIR and FORGE_ATTEMPT; prints the same JSON event lines; exits 0, 75 (transient) or 1 (permanent).

What it does, with the reference trainer's own code (model.load_base, data.load_dataset, finetune's encoding,
batches, loss, optimizer and learning-rate schedule): loads the spec's `base_model`, splits the job's training
examples into disjoint shares, one per P2PFL node (no node sees another's examples), and every node finetunes its
copy of the base model on its share with the spec's hyperparameters. After each of P2PFL_ROUNDS rounds
(ceil(max_steps / rounds) optimizer steps per node) P2PFL gossips the models and averages them (FedAvg, weighted by
share size). The aggregated model is written as a Hugging Face model directory (weights, config, tokenizer), which
`forge-trainer serve`, the eval suite and the registry take like any finetune; metrics.json has the held-out loss of
the base model (initial_val_loss) and of the aggregated one (val_loss).

Federation (env, set by the backend from its config): P2PFL_NODES nodes in this process, P2PFL_ROUNDS, P2PFL_EPOCHS
(passed to P2PFL), P2PFL_PROTOCOL memory (all nodes in this process) or grpc. With grpc, the nodes listen on
127.0.0.1 (the first on P2PFL_ADDRESS, host:port, when set) and the first joins P2PFL_PEERS (host:port of nodes of
the same experiment in other processes or hosts). A federation of several processes ("sites"): each names its place
with P2PFL_SITE (0-based) of P2PFL_SITES, so the shares stay disjoint; the site that starts the learning
(P2PFL_START=1, the default) first waits for P2PFL_WAIT_PEERS remote nodes; the others set P2PFL_START=0.

Runs in its own venv (.tools/p2pfl-venv, made by scripts/bootstrap.sh): p2pfl pins numpy<2 and huggingface_hub<1,
so transformers is 4.57 there (5.x in the trainer's venv). P2PFL's PyTorch learner needs torchvision (not
installable next to the CPU torch build), so the learner here is plain PyTorch; Ray is switched off.

Metrics, logs and node status also go out through P2PFL's own web logger when the backend sets
P2PFL_WEB_LOGGER_URL (the orchestrator API's /jobs/<id>/p2pfl) and P2PFL_WEB_LOGGER_KEY.
"""

from __future__ import annotations

import copy
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

from forge_trainer import __version__
from forge_trainer.contract import (
    EXIT_OK,
    EXIT_PERMANENT,
    Events,
    PermanentError,
    TrainerError,
    TransientError,
    dumps,
    fail,
)
from forge_trainer.finetune import (
    SEED,
    Batches,
    Encoded,
    encode_dataset,
    evaluate,
    fetch_dataset,
    make_optimizer,
    optimizer_step,
)
from forge_trainer.model import check_local_model, load_base, quiet_transformers
from forge_trainer.p2pfl_federation import federation_from_env, int_env, shares
from forge_trainer.p2pfl_weblog import prepare_web_logger
from forge_trainer.spec import FinetuneJob, finetune_job, load_spec_file

PEER_WAIT_S = 180


class LockedEvents(Events):
    """Events from several nodes' threads: one line at a time."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        with self._lock:
            super().emit(event, **fields)


def p2pfl_classes(job: FinetuneJob, per_round: int, val: list[Encoded], pad_id: int, events: Events) -> tuple[Any, Any]:
    """The model wrapper and learner P2PFL drives: a transformers causal LM, trained as the reference trainer does."""
    import torch
    from p2pfl.learning.frameworks.learner import Learner
    from p2pfl.learning.frameworks.p2pfl_model import P2PFLModel
    from p2pfl.management.logger import logger

    h = job.hyper
    device = torch.device("cpu")

    class HFModel(P2PFLModel):
        """The parameters P2PFL averages: the model's state dict, in order, as float32 arrays."""

        def get_parameters(self) -> list[Any]:
            out = []
            for t in self.model.state_dict().values():
                t = t.detach().cpu()
                out.append((t.float() if t.dtype == torch.bfloat16 else t).numpy())
            return out

        def set_parameters(self, params: Any) -> None:
            if isinstance(params, bytes):
                params, info = self.decode_parameters(params)
                self.additional_info.update(info)
            state = self.model.state_dict()
            if len(params) != len(state):
                raise ValueError(f"{len(params)} parameter arrays for a model with {len(state)}: not the same model")
            for (name, current), new in zip(state.items(), params, strict=True):
                if tuple(current.shape) != tuple(new.shape):
                    raise ValueError(
                        f"parameter {name}: shape {tuple(new.shape)} does not match {tuple(current.shape)}"
                    )
                state[name] = torch.as_tensor(new).to(current.dtype)
            self.model.load_state_dict(state)  # copies into the existing tensors: the optimizer keeps them

        def get_framework(self) -> str:
            return "pytorch"

    class FinetuneLearner(Learner):
        """Per round, `per_round` optimizer steps of the reference finetune over this node's own share."""

        def __init__(self, share: list[Encoded], seed: int, reports: bool) -> None:
            super().__init__()
            self.reports = reports  # this site's first node: its steps are the job's progress events
            self.batches = Batches(share, h.batch_size, h.gradient_accumulation_steps, pad_id, seed)
            self.share = len(share)
            self.val = Batches(val, h.batch_size, 1, pad_id, seed)
            self.optimizer: torch.optim.Optimizer | None = None
            self.step = 0
            self.round = 0
            self.stop = False
            self.diverged: str | None = None
            self.last_val: float | None = None

        def fit(self) -> Any:
            self.stop = False
            model = self.get_model()
            net = model.get_model()
            net.train()
            if self.optimizer is None:
                self.optimizer = make_optimizer(net, h.learning_rate, h.weight_decay)
            losses: list[float] = []
            for _ in range(per_round):
                if self.stop or self.step >= job.max_steps:
                    break
                t = self.step + 1
                step_loss, lr, _ = optimizer_step(net, self.optimizer, self.batches, t, job, device)
                self.step = t
                if not math.isfinite(step_loss):
                    self.diverged = (
                        f"training diverged on {self.addr} at step {t} (loss {step_loss}); lower the learning rate"
                    )
                    self.stop = True
                    break
                losses.append(step_loss)
                logger.log_metric(self.addr, "train_loss", step_loss, step=t)
                if self.reports:
                    events.emit("progress", step=t, max_steps=job.max_steps, loss=round(step_loss, 6), lr=lr)
            self.round += 1
            mean = sum(losses) / len(losses) if losses else None
            events.emit("round", node=self.addr, round=self.round, step=self.step, loss=mean, examples=self.share)
            model.set_contribution([self.addr], self.share)
            return model

        def interrupt_fit(self) -> None:
            self.stop = True

        def evaluate(self) -> dict[str, float]:
            loss = evaluate(self.get_model().get_model(), self.val, val, device)
            if loss is None or not math.isfinite(loss):
                return {}
            self.last_val = loss
            logger.log_metric(self.addr, "test_loss", loss)
            return {"test_loss": loss}

        def get_framework(self) -> str:
            return "pytorch"

    return HFModel, FinetuneLearner


def connect_peer(node: Any, peer: str) -> None:
    """A peer site may still be loading its model: it is tried every second for PEER_WAIT_S."""
    deadline = time.monotonic() + PEER_WAIT_S
    while not node.connect(peer):
        if time.monotonic() > deadline:
            raise TransientError(f"cannot connect to the P2PFL peer {peer} (P2PFL_PEERS) within {PEER_WAIT_S} s")
        time.sleep(1)


def run(env: Mapping[str, str], events: Events) -> dict[str, Any]:
    started = time.monotonic()
    fed = federation_from_env(env)
    spec_file = env.get("FORGE_SPEC") or ""
    out_dir = env.get("FORGE_OUTPUT_DIR") or ""
    if not spec_file or not out_dir:
        raise PermanentError("FORGE_SPEC and FORGE_OUTPUT_DIR must be set (the trainer contract)")
    job = finetune_job(load_spec_file(Path(spec_file)), env)
    if job.job_type != "finetune":
        raise PermanentError(f"the p2pfl backend runs finetune jobs; this spec's job_type is {job.job_type!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    attempt = int_env(env, "FORGE_ATTEMPT", 1, 1)
    events.emit("start", pid=os.getpid(), job_id=job.job_id, attempt=attempt, trainer_version=__version__)
    if job.model_source == "local":
        check_local_model(job.model_name)
    dataset = fetch_dataset(job, SEED, float(env.get("FORGE_GIT_TIMEOUT_SECONDS", "600")))

    import torch

    quiet_transformers()
    torch.manual_seed(SEED)
    base, tokenizer = load_base(job.model_name, job.model_source, job.model_revision)
    base.to(torch.device("cpu"))
    events.attach_log(out / "training_log.jsonl")
    train, val, pad_id = encode_dataset(base, tokenizer, dataset, events)
    mine = shares(train, fed, SEED)
    events.emit("shares", examples=[len(s) for s in mine])
    events.emit("config", job_id=job.job_id, base_model=job.model_name, max_steps=job.max_steps,
                hyperparameters=asdict(job.hyper), federation=asdict(fed))  # fmt: skip
    val_batches = Batches(val, job.hyper.batch_size, 1, int(pad_id), SEED)
    initial_val_loss = evaluate(base, val_batches, val, torch.device("cpu"))
    events.emit("eval", step=0, val_loss=initial_val_loss)

    from p2pfl.settings import Settings  # first: the logger reads DISABLE_RAY at import

    Settings.general.DISABLE_RAY = True
    web = prepare_web_logger()
    from importlib.metadata import version

    from datasets import Dataset, DatasetDict
    from p2pfl.communication.protocols.protobuff.grpc import GrpcCommunicationProtocol
    from p2pfl.communication.protocols.protobuff.memory import MemoryCommunicationProtocol
    from p2pfl.learning.dataset.p2pfl_dataset import P2PFLDataset
    from p2pfl.management.logger import logger
    from p2pfl.node import Node
    from p2pfl.utils.topologies import TopologyFactory, TopologyType
    from p2pfl.utils.utils import set_standalone_settings, wait_convergence, wait_to_finish

    set_standalone_settings()
    Settings.general.DISABLE_RAY = True
    Settings.general.LOG_LEVEL = "INFO"  # the nodes' status lines reach the web logger's /node-log
    logger.set_level("INFO")
    if fed.sites > 1:
        Settings.training.VOTE_TIMEOUT = PEER_WAIT_S
        Settings.training.AGGREGATION_TIMEOUT = PEER_WAIT_S
        # A site busy training on a loaded host may miss beats for longer than the test settings' 10 s: a neighbour
        # dropped then is waited for until VOTE_TIMEOUT, so across sites a silent peer is given a minute.
        Settings.heartbeat.TIMEOUT = 60

    per_round = max(1, math.ceil(job.max_steps / fed.rounds))
    HFModel, FinetuneLearner = p2pfl_classes(job, per_round, val, int(pad_id), events)
    running: list[Any] = []

    def stop_all(signum: int, _frame: FrameType | None) -> None:
        # Raised in the main thread, wherever it waits: the `finally` below stops the nodes.
        raise TransientError(
            f"interrupted by {signal.Signals(signum).name}; no checkpoint: the next attempt starts over"
        )

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    try:
        for i, share in enumerate(mine):
            # P2PFL's own dataset of the node's share (its size weighs the node in FedAvg); the learner trains on the
            # encoded examples themselves.
            split = {"train": Dataset.from_dict({"i": list(range(len(share)))}), "test": Dataset.from_dict({"i": [0]})}
            data = P2PFLDataset(DatasetDict(split), batch_size=job.hyper.batch_size)
            k = fed.site * fed.nodes + i
            node = Node(
                HFModel(copy.deepcopy(base)),
                data,
                protocol=MemoryCommunicationProtocol() if fed.protocol == "memory" else GrpcCommunicationProtocol(),
                addr=f"forge-node-{k}" if fed.protocol == "memory" else (fed.address if i == 0 else "127.0.0.1"),
                learner=FinetuneLearner(share, SEED + k, reports=i == 0),
            )
            node.start()
            running.append(node)
        learners = [n.learner for n in running]
        TopologyFactory.connect_nodes(TopologyFactory.generate_matrix(TopologyType.FULL, fed.nodes), running)
        for peer in fed.peers:
            connect_peer(running[0], peer)
        remote = max(fed.wait_peers, len(fed.peers))
        try:
            wait_convergence(running, fed.nodes - 1 + remote, only_direct=False, wait=PEER_WAIT_S if remote else 60)
        except AssertionError as err:
            raise TransientError(
                f"the P2PFL nodes did not all see each other within {PEER_WAIT_S} s "
                f"(expected {fed.nodes - 1 + remote} neighbours each; P2PFL_WAIT_PEERS {fed.wait_peers})"
            ) from err
        if fed.start:
            running[0].set_start_learning(rounds=fed.rounds, epochs=fed.epochs, trainset_size=fed.shares)
        wait_to_finish(running, timeout=int_env(env, "P2PFL_TIMEOUT_SECONDS", 86_400, 1))
        for lr in learners:
            if lr.diverged:
                raise PermanentError(lr.diverged)
        final = running[0].get_model().get_model()
    finally:
        for n in running:
            n.stop()

    val_loss = evaluate(final, val_batches, val, torch.device("cpu"))
    events.emit("eval", step=job.max_steps, val_loss=val_loss)
    final.save_pretrained(out)
    tokenizer.save_pretrained(out)
    reduction = 1 - val_loss / initial_val_loss if initial_val_loss and val_loss is not None else None
    metrics: dict[str, Any] = {
        "job_id": job.job_id,
        "attempt": attempt,
        "steps": max(lr.step for lr in learners),
        "max_steps": job.max_steps,
        "initial_val_loss": initial_val_loss,
        "val_loss": val_loss,
        "val_loss_reduction": reduction,
        "val_loss_per_node": {lr.addr: lr.last_val for lr in learners},
        "train_examples": len(train),
        "validation_examples": len(val),
        "share_examples": {lr.addr: lr.share for lr in learners},
        "data_commit": dataset.commit,
        "data_files": dataset.files,
        "base_model": job.model_name,
        "hyperparameters": asdict(job.hyper),
        "seed": SEED,
        "parameters": sum(p.numel() for p in final.parameters()),
        "federation": {
            "framework": "p2pfl",
            "version": version("p2pfl"),
            "nodes": fed.nodes,
            "sites": fed.sites,
            "site": fed.site,
            "rounds": fed.rounds,
            "epochs": fed.epochs,
            "steps_per_round": per_round,
            "protocol": fed.protocol,
            "aggregator": "FedAvg",
        },
        "web_logger": {"connected": bool(env.get("P2PFL_WEB_LOGGER_URL")), **web},
        "wall_time_seconds": time.monotonic() - started,
        "torch_version": torch.__version__,
        "trainer_version": __version__,
    }
    (out / "metrics.json").write_text(dumps(metrics, indent=2) + "\n", encoding="utf-8")
    events.emit("metrics", **metrics)
    return metrics


def main() -> int:
    for name, value in (("HF_HUB_DISABLE_TELEMETRY", "1"), ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(name, value)
    events = LockedEvents()
    try:
        run(os.environ, events)
    except TrainerError as err:
        fail(str(err))
        events.emit("error", kind=err.kind, message=str(err), exit_code=err.exit_code)
        return err.exit_code
    except Exception as err:  # an unexpected failure is a bug or a broken host: permanent, with the traceback
        traceback.print_exc()
        fail(f"unexpected {type(err).__name__}: {err}")
        return EXIT_PERMANENT
    return EXIT_OK


if __name__ == "__main__":
    code = main()
    # P2PFL's learning threads may still be inside torch (an interrupted run): a normal interpreter exit would abort
    # in them (SIGABRT, exit 134) and lose the exit code the contract asks for.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
