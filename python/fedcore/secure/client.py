"""The client half of SecAgg+: one frozen class per stage, each taking the server's message and
returning the client's reply and the next stage.

Secrets (two X25519 keys, the self-mask seed, the Shamir coin) are derived from one fresh
32-byte seed per round; the stages hold them only as long as the protocol needs them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace

import numpy as np

from fedcodec import CodecError, secagg
from fedcore.secure.encoding import RingElements, Unrounded
from fedcore.secure.graph import neighbours
from fedcore.secure.messages import (
    AdvertiseKeys,
    EncryptedShare,
    MaskedInput,
    NeighbourKeys,
    RevealedShare,
    RoundSetup,
    SecAggAbort,
    ShareDelivery,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
    share_nonce,
)

__all__ = ["ClientAdvertise", "ClientMask", "ClientShare", "ClientUnmask", "start_client"]

SCALAR = 32


@dataclass(frozen=True)
class _Secrets:
    enc: bytes
    mask: bytes
    self_seed: bytes
    coin: bytes

    @classmethod
    def derive(cls, setup: RoundSetup, seed: bytes) -> _Secrets:
        def derive(purpose: bytes) -> bytes:
            return secagg.derive_scalar(seed, setup.info(purpose))

        return cls(derive(b"enc"), derive(b"mask"), derive(b"self"), derive(b"coin"))


def _agree(me: int, peers: dict[int, bytes], secret: bytes, info: bytes) -> dict[int, bytes]:
    """Key agreement with each neighbour in one parallel Rust call; a small-order key aborts, naming whose."""
    order = sorted(peers)
    try:
        return dict(zip(order, secagg.agree_many(secret, [peers[v] for v in order], info), strict=True))
    except CodecError:
        for v in order:  # the rare bad key: find whose it is
            try:
                secagg.agree(secret, peers[v], info)
            except CodecError as exc:
                raise SecAggAbort(f"client {me}: neighbour {v}'s public key is unusable: {exc}") from exc
        raise


def start_client(setup: RoundSetup, me: int, seed: bytes | None = None) -> ClientAdvertise:
    """Stage 0: a selected client's state machine for this round (a fresh random seed unless one is given)."""
    if me not in setup.clients:
        raise ValueError(f"client {me} is not selected in this round")
    seed = secrets.token_bytes(32) if seed is None else seed
    if len(seed) != 32:
        raise ValueError(f"seed must be 32 bytes, got {len(seed)}")
    return ClientAdvertise(setup, me, _Secrets.derive(setup, seed))


@dataclass(frozen=True)
class ClientAdvertise:
    """Stage 1: publish the two public keys."""

    setup: RoundSetup
    me: int
    keys: _Secrets = field(repr=False)

    def advertise(self) -> tuple[AdvertiseKeys, ClientShare]:
        """The public keys for the server to forward to this client's neighbours."""
        message = AdvertiseKeys(self.me, secagg.public_key(self.keys.enc), secagg.public_key(self.keys.mask))
        return message, ClientShare(self.setup, self.me, self.keys)


@dataclass(frozen=True)
class ClientShare:
    """Stage 2: Shamir-share both secrets among the neighbours, each share sealed for its holder."""

    setup: RoundSetup
    me: int
    keys: _Secrets = field(repr=False)

    def share(self, received: NeighbourKeys) -> tuple[ShareKeys, ClientMask]:
        """Sealed shares for every neighbour that advertised, and the self-mask seed's commitment."""
        setup = self.setup
        mine = neighbours(setup.clients, setup.degree, setup.graph_seed, self.me)
        peers = {k.sender: k for k in received.keys if k.sender in mine}
        if len(peers) < setup.threshold:
            raise SecAggAbort(
                f"client {self.me}: {len(peers)} neighbours advertised keys, threshold is {setup.threshold}"
            )
        holders = sorted(peers)
        shares = secagg.share(
            [self.keys.mask, self.keys.self_seed],
            [setup.point(v) for v in holders],
            setup.threshold,
            self.keys.coin,
        )
        # one key per pair and direction-free: it opens v's share too
        publics = {v: peers[v].enc_public for v in holders}
        share_keys = _agree(self.me, publics, self.keys.enc, setup.info(b"share-key"))
        sealed = []
        for v, share in zip(holders, shares, strict=True):
            nonce = share_nonce(self.me, v)
            sealed.append(
                EncryptedShare(self.me, v, secagg.seal(share_keys[v], nonce, setup.round_id + nonce, share))
            )
        commitment = secagg.derive_scalar(self.keys.self_seed, setup.info(b"commit"))
        message = ShareKeys(self.me, tuple(sealed), commitment)
        return message, ClientMask(setup, self.me, self.keys, peers, share_keys)


@dataclass(frozen=True)
class ClientMask:
    """Stage 3: open the shares received, then upload x + self mask + pair masks, bit-packed in Z_2^b."""

    setup: RoundSetup
    me: int
    keys: _Secrets = field(repr=False)
    peers: dict[int, AdvertiseKeys]
    share_keys: dict[int, bytes] = field(repr=False)  # the pair keys stage 2 sealed with
    pair_seeds: dict[int, bytes] = field(default_factory=dict, repr=False)  # from `agree_ahead`, if called

    def agree_ahead(self) -> ClientMask:
        """This state with the pair-mask agreements done for every neighbour, before the update exists.

        The simulation calls it while the clients train, so stage 3 is left with the masking; the seeds
        are the ones `mask` would agree on. A key that fails is left for `mask` to name, as without this.
        """
        publics = {v: p.mask_public for v, p in self.peers.items()}
        try:
            seeds = _agree(self.me, publics, self.keys.mask, self.setup.info(b"pair-mask"))
        except (SecAggAbort, CodecError):
            return self
        return replace(self, pair_seeds=seeds)

    def mask(self, delivery: ShareDelivery, elements: RingElements) -> tuple[MaskedInput, ClientUnmask]:
        """The masked upload of `elements` (codes, or an update rounded on the way) and the neighbours
        whose sealed shares failed."""
        setup = self.setup
        values = elements.values if isinstance(elements, Unrounded) else elements
        kind = np.float32 if isinstance(elements, Unrounded) else np.uint32
        if values.shape != (setup.length,) or values.dtype != kind:
            what = "update" if kind == np.float32 else "codes"
            raise ValueError(
                f"{what} must be a {np.dtype(kind)} vector of length {setup.length}, "
                f"got {values.dtype} {values.shape}"
            )
        held: dict[int, bytes] = {}
        bad: list[int] = []
        senders = sorted(
            {s.sender for s in delivery.shares if s.sender in self.peers and s.recipient == self.me}
        )
        for s in delivery.shares:
            if s.sender not in self.peers or s.recipient != self.me or s.sender in held:
                continue
            key = self.share_keys[s.sender]
            nonce = share_nonce(s.sender, self.me)
            try:
                plain = secagg.open_sealed(key, nonce, setup.round_id + nonce, s.ciphertext)
            except CodecError:
                bad.append(s.sender)
                continue
            if len(plain) != 2 * SCALAR:
                bad.append(s.sender)
                continue
            held[s.sender] = plain
        if len(senders) < setup.threshold:
            raise SecAggAbort(
                f"client {self.me}: {len(senders)} neighbours shared keys, threshold is {setup.threshold}"
            )
        publics = {v: self.peers[v].mask_public for v in senders}
        pair_seeds = (
            self.pair_seeds
            if publics.keys() <= self.pair_seeds.keys()
            else _agree(self.me, publics, self.keys.mask, setup.info(b"pair-mask"))
        )
        seeds = [self.keys.self_seed, *(pair_seeds[v] for v in senders)]
        signs = [1, *(1 if self.me < v else -1 for v in senders)]
        if isinstance(elements, Unrounded):
            e = elements
            payload = secagg.quantize_mask(
                e.values, e.clip, e.bits, e.seed, seeds, signs, setup.ring_bits, setup.prg
            )
        else:
            payload = secagg.mask(elements, seeds, signs, setup.ring_bits, setup.prg)
        message = MaskedInput(self.me, payload, tuple(sorted(set(bad))))
        return message, ClientUnmask(setup, self.me, held, frozenset(senders))


@dataclass(frozen=True)
class ClientUnmask:
    """Stage 4: reveal survivors' self-mask shares or dropped clients' pair-key shares, never both."""

    setup: RoundSetup
    me: int
    held: dict[int, bytes] = field(repr=False)
    masked_with: frozenset[int]

    def unmask(self, request: UnmaskRequest) -> UnmaskResponse:
        """The shares the server needs to remove the masks; refuses a request that would expose a client."""
        survivors, dropped = set(request.survivors), set(request.dropped)
        if survivors & dropped:
            raise SecAggAbort(
                f"client {self.me}: server asked for both shares of {sorted(survivors & dropped)}; refusing"
            )
        if len(survivors) < self.setup.threshold:
            raise SecAggAbort(
                f"client {self.me}: only {len(survivors)} survivors, "
                f"threshold is {self.setup.threshold}; refusing"
            )
        if self.me not in survivors:
            raise SecAggAbort(f"client {self.me}: not listed as a survivor; refusing to reveal shares")
        if (survivors | dropped) - set(self.setup.clients):
            raise SecAggAbort(f"client {self.me}: request names clients outside the round")
        self_shares = tuple(
            RevealedShare(u, self.held[u][SCALAR:]) for u in sorted(survivors) if u in self.held
        )
        key_shares = tuple(RevealedShare(u, self.held[u][:SCALAR]) for u in sorted(dropped) if u in self.held)
        return UnmaskResponse(self.me, self_shares, key_shares)
