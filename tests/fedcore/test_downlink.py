"""Downlink sync: clients get the encoded difference to the model they hold, in step with the server."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fedcore.config import FLConfig
from fedcore.downlink import DownlinkSync, reconstruct
from fedcore.sim import simulate

fc = pytest.importorskip("fedcodec")

TINY = FLConfig(clients=12, per_round=4, rounds=4, local_epochs=2, batch_size=8, lr=0.1, workers=0, seed=5)


@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_clients_rebuild_exactly_the_model_the_server_recorded(dropout: float) -> None:
    config = replace(TINY, dropout=dropout)
    result = simulate(replace(config, downlink_codec="quant:4"))
    sync = result.downlink
    assert sync is not None
    held = {cid: model for cid in result.clients if (model := result.clients.get(cid).model) is not None}
    assert sorted(held) == sync.clients
    assert len(sync.clients) > TINY.per_round  # some clients took part, or were sent to, more than once
    for cid in sync.clients:
        np.testing.assert_array_equal(held[cid], sync.known(cid))
    # Clients really trained from what they rebuilt, not from the server's exact weights.
    assert not np.array_equal(result.weights, simulate(config).weights)


def test_downlink_bytes_are_the_frames_sent_to_every_selected_client() -> None:
    result = simulate(replace(TINY, downlink_codec="quant:4"))
    size = result.summary["model_size"]
    frame = len(fc.from_spec("quant:4").encode(np.zeros(size, np.float32), seed=0))
    for record in result.records:
        assert record.downlink_bytes == frame * record.selected
    assert result.summary["downlink_ratio"] > 7.0


def test_encoding_the_difference_tracks_a_moving_model_where_reencoding_it_does_not() -> None:
    rng = np.random.default_rng(0)
    weights = rng.standard_normal(4096).astype(np.float32)
    sync = DownlinkSync("quant:4", weights)
    client = sync.initial  # every client rebuilds the initial model from the seed
    codec = fc.from_spec("quant:4")
    for round_num in range(10):
        weights = (weights + 0.01 * rng.standard_normal(weights.size)).astype(np.float32)
        payload, nbytes = sync.send(client_id=7, weights=weights, seed=round_num)
        client = reconstruct(client, payload)
        naive = fc.decode(codec.encode(weights, seed=round_num))
        assert isinstance(payload, bytes)
        assert nbytes == len(payload)
    np.testing.assert_array_equal(client, sync.known(7))
    assert np.linalg.norm(client - weights) < 0.1 * np.linalg.norm(naive - weights)


def test_lossy_downlink_trains_about_as_well_as_raw_weights() -> None:
    config = replace(TINY, rounds=8, local_epochs=5)
    raw = simulate(config)
    synced = simulate(replace(config, downlink_codec="quant:4"))
    assert synced.summary["final_accuracy"] == pytest.approx(raw.summary["final_accuracy"], abs=0.05)
    assert synced.summary["downlink_bytes"] * 7 < raw.summary["downlink_bytes"]


def test_downlink_sync_needs_a_codec() -> None:
    with pytest.raises(ValueError, match="codec"):
        DownlinkSync("none", np.zeros(3, np.float32))
