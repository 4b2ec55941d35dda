"""SecAgg+ end to end: the server gets the exact sum of the surviving clients and nothing it should not."""

from dataclasses import replace

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import stats

from fedcodec import secagg
from fedcore.secure import (
    STAGES,
    SecAggAbort,
    SecAggParams,
    UnmaskRequest,
    all_neighbours,
    run_secagg_round,
    start_client,
    start_server,
)

RING = 21  # 16-bit codes, up to 32 clients


def _codes(n: int, length: int = 1000, seed: int = 0) -> dict[int, NDArray[np.uint32]]:
    rng = np.random.default_rng(seed)
    return {c: rng.integers(0, 1 << 16, length, dtype=np.uint32) for c in range(n)}


def _plain(codes: dict[int, NDArray[np.uint32]], ids: tuple[int, ...]) -> NDArray[np.uint64]:
    return sum((codes[c].astype(np.uint64) for c in ids), np.zeros(next(iter(codes.values())).size, np.uint64))


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3])
def test_unmasked_sum_equals_plain_sum_under_dropouts(stage: str, rate: float) -> None:
    codes = _codes(30)
    gone = np.random.default_rng(1).choice(30, int(rate * 30), replace=False).tolist()
    params = SecAggParams(degree=12, threshold=5, reason="test")
    result = run_secagg_round(codes, params, RING, drop={stage: gone}).result
    assert set(result.included) == set(range(30)) - (set() if stage == "unmask" else set(gone))
    np.testing.assert_array_equal(result.total, _plain(codes, result.included))
    assert result.flagged == ()


def test_a_thousand_clients_in_one_round() -> None:
    codes = _codes(1000, length=256)
    params = SecAggParams(degree=38, threshold=19, reason="choose_params(1000)")
    drop = {"share": list(range(0, 1000, 37)), "mask": list(range(5, 1000, 41))}
    result = run_secagg_round(codes, params, 16 + 10, drop=drop).result
    assert set(result.included) == set(range(1000)) - set(drop["share"]) - set(drop["mask"])
    np.testing.assert_array_equal(result.total, _plain(codes, result.included))


def test_masked_uploads_look_uniform_whatever_the_input() -> None:
    length = 4096
    for value in (0, (1 << 16) - 1):
        codes = {c: np.full(length, value, dtype=np.uint32) for c in range(40)}
        report = run_secagg_round(codes, SecAggParams(8, 4, "test"), 22, seed=value)
        del report
        # Rebuild the uploads the clients sent (the server sees nothing else) through the client API.
        uploads = _uploads(codes, SecAggParams(8, 4, "test"), 22)
        top = np.concatenate([secagg.unpack(u, 22, length) >> 14 for u in uploads])
        assert stats.chisquare(np.bincount(top, minlength=256)).pvalue > 1e-3


def _uploads(codes: dict[int, NDArray[np.uint32]], params: SecAggParams, ring_bits: int) -> list[bytes]:
    from fedcore.secure import RoundSetup

    setup = RoundSetup(b"0123456789abcdef", tuple(sorted(codes)), params.degree, params.threshold, ring_bits,
                       next(iter(codes.values())).size, b"graph seed")
    server = start_server(setup)
    stage1 = {c: start_client(setup, c).advertise() for c in setup.clients}
    keys, server2 = server.collect([m for m, _ in stage1.values()])
    stage2 = {c: s.share(keys[c]) for c, (_, s) in stage1.items()}
    deliveries, _ = server2.collect([m for m, _ in stage2.values()])
    return [s.mask(deliveries[c], codes[c])[0].payload for c, (_, s) in stage2.items()]


def test_fewer_than_t_responses_cannot_unmask() -> None:
    codes = _codes(10)
    params = SecAggParams(degree=9, threshold=6, reason="test")
    with pytest.raises(SecAggAbort, match="fewer than 6 matching shares"):
        run_secagg_round(codes, params, RING, drop={"unmask": [0, 1, 2, 3, 4]})


def test_client_refuses_to_reveal_both_shares_of_one_client() -> None:
    setup_codes = _codes(6, length=8)
    from fedcore.secure import RoundSetup

    setup = RoundSetup(b"0123456789abcdef", tuple(range(6)), 5, 3, RING, 8, b"graph seed")
    server = start_server(setup)
    stage1 = {c: start_client(setup, c).advertise() for c in setup.clients}
    keys, server2 = server.collect([m for m, _ in stage1.values()])
    stage2 = {c: s.share(keys[c]) for c, (_, s) in stage1.items()}
    deliveries, _ = server2.collect([m for m, _ in stage2.values()])
    _, unmask = stage2[0][1].mask(deliveries[0], setup_codes[0])
    with pytest.raises(SecAggAbort, match="both shares"):
        unmask.unmask(UnmaskRequest(0, survivors=(0, 1, 2, 3), dropped=(3,)))
    with pytest.raises(SecAggAbort, match="only 2 survivors"):
        unmask.unmask(UnmaskRequest(0, survivors=(0, 1), dropped=(2, 3, 4, 5)))


def _neighbour_pair(n: int, params: SecAggParams) -> tuple[int, int]:
    from fedcore.secure import RoundSetup

    setup = RoundSetup(secagg.derive_scalar((0).to_bytes(8, "little"), b"round id")[:16], tuple(range(n)),
                       params.degree, params.threshold, RING, 1, secagg.derive_scalar((0).to_bytes(8, "little"),
                                                                                      b"graph seed"))
    graph = all_neighbours(setup.clients, setup.degree, setup.graph_seed)
    return 2, min(graph[2])


def test_a_share_that_fails_to_open_names_its_sender() -> None:
    codes = _codes(20)
    params = SecAggParams(degree=8, threshold=4, reason="test")
    sender, recipient = _neighbour_pair(20, params)
    result = run_secagg_round(codes, params, RING, tamper_sealed=[(sender, recipient)]).result
    assert [(f.client, f.reporter) for f in result.flagged] == [(sender, recipient)]
    np.testing.assert_array_equal(result.total, _plain(codes, result.included))


def test_a_revealed_share_that_does_not_match_names_its_holder() -> None:
    codes = _codes(20)
    params = SecAggParams(degree=8, threshold=4, reason="test")
    owner, holder = _neighbour_pair(20, params)
    result = run_secagg_round(codes, params, RING, tamper_revealed=[(holder, owner)]).result
    assert [f.client for f in result.flagged] == [holder]
    assert "does not match" in result.flagged[0].reason
    np.testing.assert_array_equal(result.total, _plain(codes, result.included))


def test_setup_refuses_a_threshold_above_the_degree() -> None:
    from fedcore.secure import RoundSetup

    with pytest.raises(ValueError, match="threshold"):
        RoundSetup(b"0123456789abcdef", (1, 2, 3), 2, 3, RING, 8, b"g")
    assert replace  # dataclasses.replace is what the driver uses to model a tampering transport
