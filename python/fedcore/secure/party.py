"""One client's side of secure rounds, wherever the client runs: it keeps its own update and secrets.

After training, `hold` keeps the update's frame and gives back the reply without it (only counts and
loss leave the client in the clear); the frame is decoded when the update is masked, so a simulation
that holds many clients' updates decodes one at a time into warm memory. The four stages then arrive
as server messages; `answer` runs the client state machine of `fedcore.secure.client` for each and
returns the client's message. In the simulation one `SecureParty` per client lives in the simulating
process; a gRPC client process has one for itself (`answer_bytes` speaks `fedcore.secure.wire`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

import fedcodec
from fedcore.protocol.messages import Reply
from fedcore.secure.client import ClientMask, ClientShare, ClientUnmask, start_client
from fedcore.secure.messages import NeighbourKeys, SecAggAbort, ShareDelivery, UnmaskRequest
from fedcore.secure.update import SecureSetup, ring_input
from fedcore.secure.wire import STAGE_MESSAGES, ClientMessage, ServerMessage, decode, encode

__all__ = ["SecureParty"]


@dataclass(frozen=True)
class _Held:
    """The client's own training result for a round, kept until its masked input is sent."""

    frame: bytes  # the update, as the training reply carried it (checked when held)
    num_examples: int

    def update(self) -> NDArray[np.float32]:
        """The update, flat."""
        return np.asarray(fedcodec.decode(self.frame), dtype=np.float32).reshape(-1)


class SecureParty:
    """Client `client_id`'s secure-aggregation state: its held update and the stage it is at, per round."""

    def __init__(
        self, client_id: int, secret: bytes | None = None, *, keys_before_update: bool = False
    ) -> None:
        self.client_id = client_id
        self._secret = secret  # keys rounding and noise; None (simulation only): derived from public values
        # the simulation's parties advertise and share keys while they train: they hold the update by stage 3
        self._keys_before_update = keys_before_update
        self._held: dict[int, _Held] = {}
        self._announced: dict[int, SecureSetup] = {}
        self._stage: dict[int, ClientShare | ClientMask | ClientUnmask] = {}

    def hold(self, reply: Reply) -> Reply:
        """Keep the reply's update (its first frame, checked) for this round; the reply without frames."""
        if reply.client_id != self.client_id:
            raise ValueError(f"client {self.client_id} cannot hold client {reply.client_id}'s update")
        self._forget_before(reply.round)
        frame = bytes(reply.payloads[0])
        fedcodec.inspect(frame)  # a damaged frame is refused now, not at the masking stage
        self._held[reply.round] = _Held(frame, reply.num_examples)
        return replace(reply, payloads=())

    def answer(self, round_num: int, stage: str, message: ServerMessage) -> ClientMessage:
        """This client's message for `stage` of round `round_num`; SecAggAbort when it must refuse."""
        expected = STAGE_MESSAGES.get(stage, (None,))[0]
        if expected is None or not isinstance(message, expected):
            raise SecAggAbort(f"client {self.client_id}: a {type(message).__name__} for stage {stage!r}")
        me = self.client_id
        if isinstance(message, SecureSetup):
            if round_num not in self._held and not self._keys_before_update:
                raise SecAggAbort(f"client {me}: no update held for round {round_num + 1}")
            self._announced[round_num] = message
            keys, share = start_client(message.setup, me).advertise()
            self._stage[round_num] = share
            return keys
        state = self._stage.pop(round_num, None)
        if isinstance(message, NeighbourKeys) and isinstance(state, ClientShare):
            shares, mask = state.share(message)
            # keys ahead of the update: the pair-mask agreements too, so stage 3 only masks
            self._stage[round_num] = mask.agree_ahead() if self._keys_before_update else mask
            return shares
        if isinstance(message, ShareDelivery) and isinstance(state, ClientMask):
            held = self._held.pop(round_num, None)
            if held is None:
                raise SecAggAbort(f"client {me}: no update held for round {round_num + 1}")
            try:
                update = held.update()
            except fedcodec.CodecError as exc:
                raise SecAggAbort(f"client {me}: its update does not decode: {exc}") from exc
            announced = self._announced[round_num]
            elements = ring_input(update, held.num_examples, announced, me, self._secret)
            masked, unmask = state.mask(message, elements)
            self._stage[round_num] = unmask
            return masked
        if isinstance(message, UnmaskRequest) and isinstance(state, ClientUnmask):
            self._announced.pop(round_num, None)
            return state.unmask(message)
        raise SecAggAbort(f"client {me}: stage {stage!r} of round {round_num + 1} out of order")

    def answer_bytes(self, round_num: int, stage: str, payload: bytes) -> bytes:
        """`answer` over `fedcore.secure.wire` bytes (StagePayloadError for bytes that are no message)."""
        if stage not in STAGE_MESSAGES:
            raise SecAggAbort(f"client {self.client_id}: unknown stage {stage!r}")
        return encode(self.answer(round_num, stage, decode(payload, STAGE_MESSAGES[stage][0])))

    def _forget_before(self, round_num: int) -> None:
        """A new round: whatever an unfinished older round left behind goes (its secrets with it)."""
        for table in (self._held, self._announced, self._stage):
            for old in [r for r in table if r < round_num]:
                del table[old]
