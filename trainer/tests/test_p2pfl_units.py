"""The P2PFL experiment's pure pieces (no p2pfl needed): its federation settings and the nodes' data shares."""

from __future__ import annotations

import pytest

from forge_trainer.contract import PermanentError
from forge_trainer.finetune import Encoded
from forge_trainer.p2pfl_federation import Federation, federation_from_env, shares


def test_federation_defaults_and_sites() -> None:
    assert federation_from_env({}) == Federation(
        nodes=3, rounds=2, epochs=1, protocol="memory", peers=[], address="127.0.0.1", site=0, sites=1, start=True,
        wait_peers=0,
    )  # fmt: skip
    joiner = federation_from_env(
        {"P2PFL_PROTOCOL": "grpc", "P2PFL_NODES": "1", "P2PFL_PEERS": "10.0.0.2:7000", "P2PFL_SITE": "1",
         "P2PFL_SITES": "2", "P2PFL_START": "0"}
    )  # fmt: skip
    assert (joiner.peers, joiner.wait_peers, joiner.start, joiner.shares) == (["10.0.0.2:7000"], 1, False, 2)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"P2PFL_NODES": "two"}, "P2PFL_NODES must be an integer"),
        ({"P2PFL_ROUNDS": "0"}, "P2PFL_ROUNDS must be at least 1"),
        ({"P2PFL_PROTOCOL": "udp"}, "P2PFL_PROTOCOL must be memory or grpc"),
        ({"P2PFL_PEERS": "h:1"}, "P2PFL_PEERS needs P2PFL_PROTOCOL=grpc"),
        ({"P2PFL_SITE": "2", "P2PFL_SITES": "2"}, "P2PFL_SITE 2 must be below P2PFL_SITES 2"),
    ],
)
def test_federation_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        federation_from_env(env)


def test_shares_are_disjoint_across_nodes_and_sites() -> None:
    train = [Encoded([i], [i]) for i in range(11)]
    sites = [federation_from_env({"P2PFL_NODES": "2", "P2PFL_SITES": "2", "P2PFL_SITE": str(s)}) for s in (0, 1)]
    got = [[e.input_ids[0] for e in share] for fed in sites for share in shares(train, fed, seed=5)]
    assert len(got) == 4
    assert sorted(i for share in got for i in share) == list(range(11))
    assert sorted(len(s) for s in got) == [2, 3, 3, 3]
    # Every site computes the same deal: a site's shares do not depend on which site asks.
    assert got[:2] == [[e.input_ids[0] for e in s] for s in shares(train, sites[0], seed=5)]
    with pytest.raises(PermanentError, match="3 training examples cannot be shared by 4 P2PFL nodes"):
        shares(train[:3], sites[0], seed=5)
