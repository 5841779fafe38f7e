"""The P2PFL experiment's federation settings (its env) and how the job's examples are shared among the nodes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from forge_trainer.contract import PermanentError
from forge_trainer.finetune import Encoded


@dataclass(frozen=True)
class Federation:
    nodes: int
    rounds: int
    epochs: int
    protocol: str
    peers: list[str]
    address: str
    site: int
    sites: int
    start: bool
    wait_peers: int

    @property
    def shares(self) -> int:
        return self.nodes * self.sites


def int_env(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "") or str(default)
    try:
        value = int(raw)
    except ValueError as err:
        raise PermanentError(f"{name} must be an integer, got {raw!r}") from err
    if value < minimum:
        raise PermanentError(f"{name} must be at least {minimum}, got {value}")
    return value


def federation_from_env(env: Mapping[str, str]) -> Federation:
    protocol = env.get("P2PFL_PROTOCOL", "memory") or "memory"
    if protocol not in ("memory", "grpc"):
        raise PermanentError(f"P2PFL_PROTOCOL must be memory or grpc, got {protocol!r}")
    peers = [p for p in env.get("P2PFL_PEERS", "").split(",") if p]
    if peers and protocol != "grpc":
        raise PermanentError("P2PFL_PEERS needs P2PFL_PROTOCOL=grpc (the memory protocol has no network)")
    sites = int_env(env, "P2PFL_SITES", 1, 1)
    site = int_env(env, "P2PFL_SITE", 0, 0)
    if site >= sites:
        raise PermanentError(f"P2PFL_SITE {site} must be below P2PFL_SITES {sites}")
    return Federation(
        nodes=int_env(env, "P2PFL_NODES", 3, 1),
        rounds=int_env(env, "P2PFL_ROUNDS", 2, 1),
        epochs=int_env(env, "P2PFL_EPOCHS", 1, 1),
        protocol=protocol,
        peers=peers,
        address=env.get("P2PFL_ADDRESS", "") or "127.0.0.1",
        site=site,
        sites=sites,
        start=env.get("P2PFL_START", "1") != "0",
        wait_peers=int_env(env, "P2PFL_WAIT_PEERS", len(peers), 0),
    )


def shares(train: list[Encoded], fed: Federation, seed: int) -> list[list[Encoded]]:
    """This site's nodes' shares: a seeded permutation of the examples dealt out to all nodes of all sites."""
    import torch

    if len(train) < fed.shares:
        raise PermanentError(
            f"bad data: {len(train)} training examples cannot be shared by {fed.shares} P2PFL nodes "
            f"(P2PFL_NODES {fed.nodes} x P2PFL_SITES {fed.sites}); add data or lower the backend's `nodes`"
        )
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()
    first = fed.site * fed.nodes
    return [[train[i] for i in order[k :: fed.shares]] for k in range(first, first + fed.nodes)]
