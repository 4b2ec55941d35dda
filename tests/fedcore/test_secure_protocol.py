"""SecAgg+ end to end: the server gets the exact sum of the surviving clients and nothing it should not."""

from dataclasses import replace

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import stats

from fedcodec import CodecError, secagg
from fedcore.secure import (
    STAGES,
    RoundSetup,
    SecAggAbort,
    SecAggParams,
    UnmaskRequest,
    Unrounded,
    all_neighbours,
    make_setup,
    run_secagg_round,
    start_client,
    start_server,
)
from fedcore.secure.client import ClientMask

RING = 21  # 16-bit codes, up to 32 clients
PARAMS = SecAggParams(degree=8, threshold=4, reason="small test graph")


def _codes(n: int, length: int = 1000, seed: int = 0) -> dict[int, NDArray[np.uint32]]:
    rng = np.random.default_rng(seed)
    return {c: rng.integers(0, 1 << 16, length, dtype=np.uint32) for c in range(n)}


def _plain(codes: dict[int, NDArray[np.uint32]], ids: tuple[int, ...]) -> NDArray[np.uint64]:
    return np.sum([codes[c].astype(np.uint64) for c in ids], axis=0)


def _through_stage_two(setup: RoundSetup) -> dict[int, tuple[ClientMask, object]]:
    """Runs stages 1-2 with the client and server halves; returns each client's mask stage and delivery."""
    server = start_server(setup)
    stage1 = {c: start_client(setup, c).advertise() for c in setup.clients}
    keys, server2 = server.collect([m for m, _ in stage1.values()])
    stage2 = {c: s.share(keys[c]) for c, (_, s) in stage1.items()}
    deliveries, _ = server2.collect([m for m, _ in stage2.values()])
    return {c: (s, deliveries[c]) for c, (_, s) in stage2.items()}


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3])
def test_unmasked_sum_equals_plain_sum_under_dropouts(stage: str, rate: float) -> None:
    codes = _codes(30)
    gone = np.random.default_rng(1).choice(30, int(rate * 30), replace=False).tolist()
    params = SecAggParams(degree=12, threshold=5, reason="tolerates 7 of 12 neighbours gone")
    result = run_secagg_round(codes, params, RING, drop={stage: gone}).result
    # Clients gone at the unmask stage already sent their masked input: they stay in the sum.
    assert set(result.included) == set(range(30)) - (set() if stage == "unmask" else set(gone))
    np.testing.assert_array_equal(result.total, _plain(codes, result.included))
    assert result.flagged == ()


@pytest.mark.slow
def test_a_thousand_clients_in_one_round() -> None:
    codes = _codes(1000, length=256)
    params = SecAggParams(degree=38, threshold=19, reason="choose_params(1000)")
    drop = {"share": list(range(0, 1000, 37)), "mask": list(range(5, 1000, 41))}
    result = run_secagg_round(codes, params, 16 + 10, drop=drop).result
    assert set(result.included) == set(range(1000)) - set(drop["share"]) - set(drop["mask"])
    np.testing.assert_array_equal(result.total, _plain(codes, result.included))


@pytest.mark.parametrize("value", [0, (1 << 16) - 1])
def test_masked_uploads_look_uniform_whatever_the_input(value: int) -> None:
    length, ring = 4096, 22
    setup = make_setup(tuple(range(40)), length, PARAMS, ring, seed=value)
    constant = np.full(length, value, dtype=np.uint32)
    uploads = [
        mask.mask(delivery, constant)[0].payload for mask, delivery in _through_stage_two(setup).values()
    ]
    top_bytes = np.concatenate([secagg.unpack(u, ring, length) >> (ring - 8) for u in uploads])
    assert stats.chisquare(np.bincount(top_bytes, minlength=256)).pvalue > 1e-3


def test_fewer_than_t_responses_cannot_unmask() -> None:
    params = SecAggParams(degree=9, threshold=6, reason="complete graph of 10")
    with pytest.raises(SecAggAbort, match="fewer than 6 matching shares"):
        run_secagg_round(_codes(10), params, RING, drop={"unmask": [0, 1, 2, 3, 4]})


def test_t_minus_one_shares_do_not_rebuild_a_self_mask_seed() -> None:
    seed = secagg.derive_scalar(b"client", b"self")
    other = secagg.derive_scalar(b"client", b"pair")
    shares = secagg.share([other, seed], [1, 2, 3, 4, 5, 6], 4, b"coin")
    (three,) = secagg.interpolate([1, 2, 3], shares[:3], [0])
    (four,) = secagg.interpolate([1, 2, 3, 4], shares[:4], [0])
    assert four[32:] == seed
    assert three[32:] != seed


def test_client_refuses_to_reveal_both_shares_of_one_client() -> None:
    setup = make_setup(tuple(range(6)), 8, SecAggParams(5, 3, "complete graph of 6"), RING)
    mask, delivery = _through_stage_two(setup)[0]
    _, unmask = mask.mask(delivery, np.zeros(8, dtype=np.uint32))  # type: ignore[arg-type]
    with pytest.raises(SecAggAbort, match="both shares"):
        unmask.unmask(UnmaskRequest(0, survivors=(0, 1, 2, 3), dropped=(3,)))
    with pytest.raises(SecAggAbort, match="only 2 survivors"):
        unmask.unmask(UnmaskRequest(0, survivors=(0, 1), dropped=(2, 3, 4, 5)))


def test_an_update_rounded_while_masked_uploads_its_codes_masked_and_wrong_inputs_are_refused() -> None:
    setup = make_setup(tuple(range(6)), 5000, SecAggParams(5, 3, "complete graph of 6"), RING)
    mask, delivery = _through_stage_two(setup)[0]
    values = np.random.default_rng(3).uniform(-1.2, 1.2, 5000).astype(np.float32)
    update = Unrounded(values, clip=1.0, bits=16, seed=bytes(range(32)))
    rounded, _ = mask.mask(delivery, update)  # type: ignore[arg-type]
    assert rounded.payload == mask.mask(delivery, update.codes())[0].payload  # type: ignore[arg-type]
    for wrong, why in [
        (replace(update, values=values[:-1]), "update must be a float32 vector of length 5000"),
        (replace(update, values=values.astype(np.float64)), "update must be a float32 vector"),
        (values.view(np.uint32)[:10], "codes must be a uint32 vector of length 5000"),
    ]:
        with pytest.raises(ValueError, match=why):
            mask.mask(delivery, wrong)  # type: ignore[arg-type]
    spoiled = values.copy()
    spoiled[4321] = np.nan
    with pytest.raises(CodecError, match="non-finite value \\(NaN\\) at flat index 4321"):
        mask.mask(delivery, replace(update, values=spoiled))  # type: ignore[arg-type]


def _neighbours_of(client: int, n: int) -> frozenset[int]:
    setup = make_setup(tuple(range(n)), 1, PARAMS, RING)
    return all_neighbours(setup.clients, setup.degree, setup.graph_seed)[client]


def test_a_share_that_fails_to_open_names_its_sender() -> None:
    codes = _codes(20)
    sender, recipient = 2, min(_neighbours_of(2, 20))
    result = run_secagg_round(codes, PARAMS, RING, tamper_sealed=[(sender, recipient)]).result
    assert [(f.client, f.reporter) for f in result.flagged] == [(sender, recipient)]
    np.testing.assert_array_equal(result.total, _plain(codes, result.included))


def test_a_revealed_share_that_does_not_match_names_its_holder() -> None:
    codes = _codes(20)
    owner, holder = 2, min(_neighbours_of(2, 20))
    result = run_secagg_round(codes, PARAMS, RING, tamper_revealed=[(holder, owner)]).result
    assert [f.client for f in result.flagged] == [holder]
    assert "does not match" in result.flagged[0].reason
    np.testing.assert_array_equal(result.total, _plain(codes, result.included))


def test_a_small_order_or_twist_public_key_is_refused_and_named() -> None:
    setup = make_setup(tuple(range(6)), 8, SecAggParams(5, 3, "complete graph of 6"), RING)
    adverts = [start_client(setup, c).advertise()[0] for c in setup.clients]
    raw = [secagg.derive_scalar(b"raw", bytes([i])) for i in range(32)]
    twist = next(k for k, fault in zip(raw, secagg.key_faults(raw), strict=True) if fault is not None)
    adverts[4] = replace(adverts[4], mask_public=bytes(32))
    adverts[1] = replace(adverts[1], enc_public=twist)
    keys, stage2 = start_server(setup).collect(adverts)
    assert sorted(keys) == [0, 2, 3, 5]
    assert {f.client: f.reason for f in stage2.flagged} == {
        1: "advertised an unusable public key: it is not on Curve25519 (a point of its twist)",
        4: "advertised an unusable public key: it has small order (non-contributory X25519 agreement)",
    }


def test_setup_refuses_a_threshold_above_the_degree() -> None:
    with pytest.raises(ValueError, match="threshold"):
        RoundSetup(b"0123456789abcdef", (1, 2, 3), 2, 3, RING, 8, b"g")
