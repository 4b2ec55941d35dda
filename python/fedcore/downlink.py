"""Downlink sync: each client receives the compressed difference to the model it reconstructed last."""

from __future__ import annotations

import numpy as np

from fedcore.compression import Vector, normalise_spec
from fedcore.uplink.codec import decode_frame, encode_frame


def reconstruct(known: Vector, payload: bytes) -> Vector:
    """A client's model after a message: what it held plus the decoded difference (the server alike)."""
    return (known + decode_frame(payload)).astype(np.float32)


class DownlinkSync:
    """The server's record of what every client holds, so each difference is taken against exactly that.

    Encoding the difference rather than the weights keeps the codec's error from piling up: a client
    ends each message at most one quantisation of a (small) difference away from the global model.
    A client never seen starts from the initial weights, which every client rebuilds from the seed.

    Memory: one float32 model per client that has received a message. That is fine for simulation;
    a deployment with very many clients would bound it (e.g. resend in full after a long absence).
    """

    def __init__(self, spec: str, initial: Vector) -> None:
        self._spec = normalise_spec(spec)
        if self._spec is None:
            raise ValueError("downlink sync needs a codec; without one the weights travel as they are")
        self._initial = np.array(initial, dtype=np.float32)
        self._known: dict[int, Vector] = {}

    @property
    def initial(self) -> Vector:
        """The model every client holds before its first message (a copy)."""
        return self._initial.copy()

    def copy(self) -> DownlinkSync:
        """An independent record, so a round that fails half-way leaves the checkpointed one as it was."""
        twin = DownlinkSync.__new__(DownlinkSync)
        twin._spec = self._spec
        twin._initial = self._initial
        twin._known = dict(self._known)
        return twin

    def known(self, client_id: int) -> Vector:
        """The server's record of the model `client_id` holds now (a copy)."""
        return self._known.get(client_id, self._initial).copy()

    @property
    def clients(self) -> list[int]:
        """Clients that have received at least one message, in ascending order."""
        return sorted(self._known)

    def send(self, client_id: int, weights: Vector, seed: int) -> tuple[bytes, int]:
        """The message for one client (the encoded difference) and its length; updates the record."""
        known = self._known.get(client_id, self._initial)
        diff = (np.asarray(weights, dtype=np.float32) - known).astype(np.float32)
        payload = encode_frame(self._spec, diff, seed)
        self._known[client_id] = reconstruct(known, payload)
        return payload, len(payload)
