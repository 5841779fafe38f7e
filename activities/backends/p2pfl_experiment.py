"""A federated finetune as a P2PFL experiment: the `p2pfl` backend's trainer (activities/backends/p2pfl.ts).

Runs under the trainer contract (DESIGN.md section 6): reads FORGE_SPEC, DATA_REPO/DATA_BRANCH/DATA_PATH and
FORGE_OUTPUT_DIR; prints progress/metrics JSON lines; writes model.safetensors, config.json, training_log.jsonl and
metrics.json; exits 0 on success, 75 on a transient failure (data repository unreachable), 1 otherwise.

The experiment: the job's JSONL records are split into P2PFL_NODES disjoint partitions, one per P2PFL node (no node
sees another's records); every node trains a small byte-level language model on its own partition; P2PFL gossips
the models between the nodes and averages them (FedAvg) after each of P2PFL_ROUNDS rounds. The aggregated model is
the job's output. Protocol: P2PFL's in-memory one (all nodes in this process) or gRPC (nodes listen on 127.0.0.1 and
also join P2PFL_PEERS, nodes of the same experiment on other hosts).

Runs in its own venv (.tools/p2pfl-venv, made by scripts/bootstrap.sh): p2pfl pins numpy<2 and click 8.1.8, which
the reference trainer's venv cannot take. Its PyTorch learner needs torchvision (not installable next to the CPU
torch build), so the learner here is plain PyTorch; Ray is switched off (one process, small models).

Metrics, logs and node status also go out through P2PFL's own web logger (WebP2PFLogger, P2pflWebServices) when
the backend sets P2PFL's variables P2PFL_WEB_LOGGER_URL (the orchestrator API's /jobs/<id>/p2pfl) and
P2PFL_WEB_LOGGER_KEY (a key for this job and attempt): the API stores what its endpoints receive per job.
"""

from __future__ import annotations

import json
import math
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EXIT_TRANSIENT = 75
CONTEXT = 8
DIM = 32


def emit(event: dict[str, Any]) -> None:
    print(json.dumps(event), flush=True)


def fail(message: str, code: int = 1) -> None:
    print(f"p2pfl experiment: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def prepare_web_logger() -> dict[str, int]:
    """Two fixes to P2PFL 0.4.4's web logger, which is otherwise used as shipped.

    1. WebP2PFLogger.log_metric reads self._nodes, which only the innermost P2PFLogger has: once connected, every
       metric raises AttributeError in the learner and the experiment stops. The decorators' get_nodes() reaches it.
    2. Its web-services client raises when a POST fails (inside Node.start() or the learner): an API restart would
       fail the job. Telemetry must not: failures are counted and reported, a node's registration is retried (without
       its node_id P2PFL skips everything that node sends).
    Communication logs are not sent: P2PFL 0.4.4's client does not implement them.
    """
    from p2pfl.management.logger.decorators.web_logger import WebP2PFLogger
    from p2pfl.management.p2pfl_web_services import P2pflWebServices

    if not hasattr(WebP2PFLogger, "_nodes"):
        WebP2PFLogger._nodes = property(lambda self: self.get_nodes())  # type: ignore[attr-defined]

    counts = {"ok": 0, "failed": 0}

    def guarded(name: str, tries: int) -> None:
        original = getattr(P2pflWebServices, name)

        def call(self: Any, *args: Any, **kwargs: Any) -> None:
            for attempt in range(tries):
                try:
                    original(self, *args, **kwargs)
                    counts["ok"] += 1
                    return
                except Exception as err:  # noqa: BLE001 - whatever requests or P2PFL raise
                    if attempt + 1 < tries:
                        time.sleep(0.5 * (attempt + 1))
                        continue
                    counts["failed"] += 1
                    if counts["failed"] <= 3:
                        print(f"p2pfl experiment: web logger {name} failed: {err}", file=sys.stderr, flush=True)

        setattr(P2pflWebServices, name, call)

    # It has no endpoint yet and raises NotImplementedError, which the logger turns into a warning per message.
    P2pflWebServices.send_communication_log = lambda self, *args, **kwargs: None  # type: ignore[method-assign]
    guarded("register_node", 4)
    for name in ("send_log", "send_local_metric", "send_global_metric", "send_system_metric"):
        guarded(name, 1)
    return counts


def env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        fail(f"{name} must be an integer")
        raise


# ---- data ----------------------------------------------------------------------------------------------------------


def clone_data(repo: str, branch: str, into: Path) -> Path:
    cmd = ["git", "clone", "--quiet", "--depth", "1", "--branch", branch, repo, str(into)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        # A repository that does not answer may answer later; a missing branch or path will not.
        transient = any(
            s in done.stderr for s in ("Could not resolve host", "Connection timed out", "Connection refused")
        )
        fail(f"cannot clone {repo}@{branch}: {done.stderr.strip()[-500:]}", EXIT_TRANSIENT if transient else 1)
    return into


def record_text(record: Any) -> str:
    if isinstance(record, str):
        return record
    if isinstance(record, dict):
        return "\n".join(str(v) for v in record.values() if isinstance(v, (str, int, float)))
    return json.dumps(record)


def read_records(root: Path, rel: str) -> list[str]:
    base = (root / rel).resolve()
    if root.resolve() not in (base, *base.parents):
        fail(f"DATA_PATH {rel} leaves the repository")
    files = [base] if base.is_file() else sorted(base.rglob("*.jsonl"))
    texts: list[str] = []
    for f in files:
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                texts.append(record_text(json.loads(line)))
            except ValueError:
                fail(f"{f.relative_to(root)}:{n} is not JSON")
    if not texts:
        fail(f"no JSONL records under {rel}")
    return texts


def examples(texts: list[str]) -> tuple[list[list[int]], list[int]]:
    xs: list[list[int]] = []
    ys: list[int] = []
    for t in texts:
        b = [0] * CONTEXT + list(t.encode("utf-8")) + [10]
        for i in range(CONTEXT, len(b)):
            xs.append(b[i - CONTEXT : i])
            ys.append(b[i])
    return xs, ys


# ---- model, learner ------------------------------------------------------------------------------------------------


def build(torch: Any, p2pfl: dict[str, Any], settings: dict[str, Any]) -> tuple[Any, Any, Any]:
    nn = torch.nn
    P2PFLModel = p2pfl["P2PFLModel"]
    Learner = p2pfl["Learner"]
    DataExportStrategy = p2pfl["DataExportStrategy"]

    class ByteLM(nn.Module):
        """Next byte from the previous CONTEXT bytes: embedding, one hidden layer, logits over 256 bytes."""

        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(256, DIM)
            self.hidden = nn.Linear(CONTEXT * DIM, 4 * DIM)
            self.out = nn.Linear(4 * DIM, 256)

        def forward(self, x: Any) -> Any:
            h = self.embed(x).flatten(1)
            return self.out(torch.tanh(self.hidden(h)))

    class TorchModel(P2PFLModel):
        def get_parameters(self) -> list[Any]:
            return [p.detach().cpu().numpy() for _, p in self.model.state_dict().items()]

        def set_parameters(self, params: Any) -> None:
            if isinstance(params, bytes):
                params, info = self.decode_parameters(params)
                self.additional_info.update(info)
            state = self.model.state_dict()
            for (name, current), new in zip(state.items(), params, strict=True):
                if tuple(current.shape) != tuple(new.shape):
                    raise ValueError(
                        f"parameter {name}: shape {tuple(new.shape)} does not match {tuple(current.shape)}"
                    )
                state[name] = torch.tensor(new)
            self.model.load_state_dict(state)

        def get_framework(self) -> str:
            return "pytorch"

    class Tensors(DataExportStrategy):
        @staticmethod
        def export(data: Any, batch_size: int | None = None, **kwargs: Any) -> Any:
            return torch.tensor(data["x"], dtype=torch.long), torch.tensor(data["y"], dtype=torch.long)

    class PlainTorchLearner(Learner):
        """Local epochs of Adam over the node's own partition, at most `steps` optimizer steps per round."""

        def __init__(self) -> None:
            super().__init__()
            self.stop = False
            self.round = 0
            self.last_loss = math.nan

        def fit(self) -> Any:
            self.stop = False
            model = self.get_model()
            x, y = self.get_data().export(Tensors, train=True)
            net = model.get_model()
            opt = torch.optim.Adam(net.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
            gen = torch.Generator().manual_seed(settings["seed"] + self.round)
            steps = 0
            losses: list[float] = []
            for _ in range(self.epochs):
                order = torch.randperm(len(y), generator=gen)
                for start in range(0, len(y), settings["batch_size"]):
                    if self.stop or steps >= settings["steps_per_round"]:
                        break
                    idx = order[start : start + settings["batch_size"]]
                    loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    losses.append(float(loss.detach()))
                    steps += 1
                    if math.isfinite(losses[-1]):  # JSON has no NaN: the web logger's POST would be refused
                        p2pfl["logger"].log_metric(self.addr, "train_loss", losses[-1], step=steps)
            self.round += 1
            self.last_loss = sum(losses) / len(losses) if losses else math.nan
            settings["on_fit"](self.addr, self.round, steps, self.last_loss)
            model.set_contribution([self.addr], self.get_data().get_num_samples())
            return model

        def interrupt_fit(self) -> None:
            self.stop = True

        def evaluate(self) -> dict[str, float]:
            x, y = self.get_data().export(Tensors, train=False)
            if len(y) == 0:
                return {}
            with torch.no_grad():
                loss = float(torch.nn.functional.cross_entropy(self.get_model().get_model()(x), y))
            if math.isfinite(loss):
                p2pfl["logger"].log_metric(self.addr, "test_loss", loss)
            return {"test_loss": loss}

        def get_framework(self) -> str:
            return "pytorch"

    return ByteLM, TorchModel, PlainTorchLearner


# ---- outputs -------------------------------------------------------------------------------------------------------


def write_safetensors(path: Path, tensors: dict[str, Any], metadata: dict[str, str]) -> None:
    """The safetensors format: u64 header length, JSON header (dtype, shape, offsets), raw little-endian data."""
    header: dict[str, Any] = {"__metadata__": metadata}
    blobs: list[bytes] = []
    offset = 0
    for name, t in tensors.items():
        data = t.detach().cpu().contiguous().float().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)
    tmp.replace(path)


def main() -> None:
    out = Path(os.environ.get("FORGE_OUTPUT_DIR") or fail("FORGE_OUTPUT_DIR is not set") or ".")
    spec_file = os.environ.get("FORGE_SPEC") or fail("FORGE_SPEC is not set") or ""
    try:
        spec = json.loads(Path(spec_file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        fail(f"cannot read FORGE_SPEC={spec_file}: {err}")
    nodes = env_int("P2PFL_NODES", 3)
    rounds = env_int("P2PFL_ROUNDS", 2)
    epochs = env_int("P2PFL_EPOCHS", 1)
    protocol = os.environ.get("P2PFL_PROTOCOL", "memory")
    peers = [p for p in os.environ.get("P2PFL_PEERS", "").split(",") if p]
    hp = spec.get("hyperparameters", {})
    max_steps = int(spec.get("objective", {}).get("max_steps", 100))
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="p2pfl-data-") as tmp:
        repo = clone_data(os.environ["DATA_REPO"], os.environ.get("DATA_BRANCH", "main"), Path(tmp) / "repo")
        texts = read_records(repo, os.environ.get("DATA_PATH", "."))

    t0 = time.time()
    import torch
    from p2pfl.settings import Settings  # first: the logger reads DISABLE_RAY at import

    Settings.general.DISABLE_RAY = True
    web = prepare_web_logger()
    from importlib.metadata import version

    from datasets import Dataset, DatasetDict
    from p2pfl.communication.protocols.protobuff.grpc import GrpcCommunicationProtocol
    from p2pfl.communication.protocols.protobuff.memory import MemoryCommunicationProtocol
    from p2pfl.learning.dataset.p2pfl_dataset import DataExportStrategy, P2PFLDataset
    from p2pfl.learning.dataset.partition_strategies import RandomIIDPartitionStrategy
    from p2pfl.learning.frameworks.learner import Learner
    from p2pfl.learning.frameworks.p2pfl_model import P2PFLModel
    from p2pfl.management.logger import logger
    from p2pfl.node import Node
    from p2pfl.utils.topologies import TopologyFactory, TopologyType
    from p2pfl.utils.utils import set_standalone_settings, wait_convergence, wait_to_finish

    set_standalone_settings()
    Settings.general.DISABLE_RAY = True
    # INFO: the nodes' status lines (learning started, round ended, ...) reach the web logger's /node-log.
    Settings.general.LOG_LEVEL = "INFO"
    logger.set_level("INFO")
    seed = int(os.environ.get("FORGE_ATTEMPT", "1"))
    torch.manual_seed(seed)

    log_path = out / "training_log.jsonl"
    log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed at the end
    progress = {"steps": 0}
    total_steps = max(1, max_steps)
    per_round = max(1, math.ceil(max_steps / rounds))

    def on_fit(addr: str, rnd: int, steps: int, loss: float) -> None:
        log.write(json.dumps({"node": addr, "round": rnd, "steps": steps, "loss": loss}) + "\n")
        log.flush()
        if addr == first_addr[0]:
            progress["steps"] = min(total_steps, rnd * per_round)
            emit({"event": "progress", "step": progress["steps"], "max_steps": total_steps, "loss": loss, "round": rnd})

    first_addr = [""]
    settings = {
        "lr": float(hp.get("learning_rate", 1e-3)),
        "weight_decay": float(hp.get("weight_decay", 0.0)),
        "batch_size": int(hp.get("batch_size", 16)),
        "steps_per_round": per_round,
        "seed": seed,
        "on_fit": on_fit,
    }
    ByteLM, TorchModel, PlainTorchLearner = build(
        torch,
        {"P2PFLModel": P2PFLModel, "Learner": Learner, "DataExportStrategy": DataExportStrategy, "logger": logger},
        settings,
    )

    xs, ys = examples(texts)
    split = max(1, int(len(ys) * (1 - float(spec.get("data", {}).get("validation_split", 0.1)))))
    data = P2PFLDataset(
        DatasetDict(
            {
                "train": Dataset.from_dict({"x": xs[:split], "y": ys[:split]}),
                "test": Dataset.from_dict({"x": xs[split:] or xs[:1], "y": ys[split:] or ys[:1]}),
            }
        ),
        batch_size=settings["batch_size"],
    )
    partitions = data.generate_partitions(nodes, RandomIIDPartitionStrategy, seed=seed, label_tag="y")

    running: list[Any] = []

    def stop_all(*_: Any) -> None:
        for n in running:
            n.stop()
        sys.exit(EXIT_TRANSIENT)

    signal.signal(signal.SIGTERM, stop_all)
    base = ByteLM()
    for i in range(nodes):
        model = TorchModel(ByteLM())
        model.set_parameters([p.detach().numpy() for p in base.state_dict().values()])
        proto = MemoryCommunicationProtocol() if protocol == "memory" else GrpcCommunicationProtocol()
        node = Node(
            model,
            partitions[i],
            protocol=proto,
            addr=f"forge-node-{i}" if protocol == "memory" else "127.0.0.1",
            learner=PlainTorchLearner(),
        )
        node.start()
        running.append(node)
    first_addr[0] = running[0].addr
    try:
        TopologyFactory.connect_nodes(TopologyFactory.generate_matrix(TopologyType.FULL, nodes), running)
        for peer in peers:
            running[0].connect(peer)
        wait_convergence(running, nodes - 1 + len(peers), only_direct=False, wait=60)
        running[0].set_start_learning(rounds=rounds, epochs=epochs)
        wait_to_finish(running, timeout=int(spec.get("resources", {}).get("max_hours", 1) * 3600))
        final = running[0].get_model()
        evals = {n.addr: n.learner.evaluate().get("test_loss", math.nan) for n in running}
    finally:
        for n in running:
            n.stop()
        log.close()

    net = final.get_model()
    write_safetensors(
        out / "model.safetensors", dict(net.state_dict()), {"format": "pt", "producer": "chrysalis-forge p2pfl"}
    )
    config = {
        "model_type": "forge-p2pfl-byte-lm",
        "vocab_size": 256,
        "context": CONTEXT,
        "dim": DIM,
        "federation": {
            "framework": "p2pfl",
            "version": version("p2pfl"),
            "nodes": nodes,
            "rounds": rounds,
            "epochs": epochs,
            "protocol": protocol,
            "aggregator": "FedAvg",
        },
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    losses = [v for v in evals.values() if not math.isnan(v)]
    metrics = {
        "eval_loss": sum(losses) / len(losses) if losses else None,
        "eval_loss_per_node": evals,
        "records": len(texts),
        "examples": len(ys),
        "seconds": round(time.time() - t0, 3),
        "p2pfl_global_logs": logger.get_global_logs(),
        "web_logger": {"connected": bool(os.environ.get("P2PFL_WEB_LOGGER_URL")), **web},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
    emit({"event": "metrics", **{k: v for k, v in metrics.items() if k != "p2pfl_global_logs"}})


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as err:
        import traceback

        traceback.print_exc()
        fail(f"{type(err).__name__}: {err}")
