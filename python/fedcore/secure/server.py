"""The server half of SecAgg+: one class per stage, each collecting the clients' messages of that
stage and returning the answers to send and the next stage.

The server routes sealed shares it cannot open, sums masked payloads it cannot read, and at the
end reconstructs exactly one secret per client: the self-mask seed of a client whose input
arrived, or the pair-mask key of one that dropped after sharing. Every reconstruction is
checked against what the owner committed to (its advertised public key, its seed commitment),
and every extra share against the polynomial, so a share that does not match is named.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from fedcodec import CodecError, secagg
from fedcore.secure.aggregator import ModularSum
from fedcore.secure.graph import all_neighbours
from fedcore.secure.messages import (
    AdvertiseKeys,
    EncryptedShare,
    Flag,
    MaskedInput,
    NeighbourKeys,
    RoundSetup,
    SecAggAbort,
    SecAggResult,
    ShareDelivery,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)

__all__ = ["ServerAdvertise", "ServerCollect", "ServerShare", "ServerUnmask", "start_server"]

MAX_SUBSETS = 256  # t-subsets tried when the first t shares of a secret do not verify


class _Sent(Protocol):
    @property
    def sender(self) -> int: ...


_M = TypeVar("_M", bound=_Sent)


def _unique(messages: Iterable[_M], allowed: Iterable[int]) -> dict[int, _M]:
    """The first message of each allowed sender (later duplicates and strangers are ignored)."""
    ok = set(allowed)
    out: dict[int, _M] = {}
    for m in messages:
        if m.sender in ok and m.sender not in out:
            out[m.sender] = m
    return out


def start_server(setup: RoundSetup) -> ServerAdvertise:
    """Stage 0: the server's state machine for a round it announced with `setup`."""
    return ServerAdvertise(setup, all_neighbours(setup.clients, setup.degree, setup.graph_seed))


@dataclass(frozen=True)
class ServerAdvertise:
    """Stage 1: collect public keys and forward each client its neighbours' keys."""

    setup: RoundSetup
    graph: dict[int, frozenset[int]]

    def collect(self, messages: Sequence[AdvertiseKeys]) -> tuple[dict[int, NeighbourKeys], ServerShare]:
        """Keys to send to each client that advertised (U1)."""
        keys: dict[int, AdvertiseKeys] = {}
        flagged: list[Flag] = []
        unique = _unique(messages, self.setup.clients)
        # a key off the curve or of small order would make its neighbours refuse it (or fix every key derived
        # with it): refuse it before anyone uses it
        faults = secagg.key_faults([p for m in unique.values() for p in (m.enc_public, m.mask_public)])
        for i, (u, m) in enumerate(unique.items()):
            fault = faults[2 * i] or faults[2 * i + 1]
            if fault is not None:
                flagged.append(Flag(u, f"advertised an unusable public key: {fault}"))
            else:
                keys[u] = m
        out = {
            u: NeighbourKeys(u, tuple(keys[v] for v in sorted(self.graph[u]) if v in keys))
            for u in sorted(keys)
        }
        return out, ServerShare(self.setup, self.graph, keys, tuple(flagged))


@dataclass(frozen=True)
class ServerShare:
    """Stage 2: route each sealed share to its holder; keep the self-mask commitments."""

    setup: RoundSetup
    graph: dict[int, frozenset[int]]
    keys: dict[int, AdvertiseKeys]
    flagged: tuple[Flag, ...] = ()

    def collect(self, messages: Sequence[ShareKeys]) -> tuple[dict[int, ShareDelivery], ServerCollect]:
        """Deliveries for the clients that shared keys (U2); a client that skipped a neighbour is flagged."""
        flagged = list(self.flagged)
        shared: dict[int, ShareKeys] = {}
        for u, m in _unique(messages, self.keys).items():
            expected = {v for v in self.graph[u] if v in self.keys}
            got = [s for s in m.shares if s.sender == u]
            if {s.recipient for s in got} != expected or len(got) != len(expected):
                flagged.append(Flag(u, "sent shares that do not cover exactly its neighbours"))
                continue
            shared[u] = m
        inbox: dict[int, list[EncryptedShare]] = {u: [] for u in shared}
        for m in shared.values():
            for s in m.shares:
                if s.recipient in inbox:
                    inbox[s.recipient].append(s)
        deliveries = {v: ShareDelivery(v, tuple(inbox[v])) for v in sorted(inbox)}
        commitments = {u: m.self_mask_commitment for u, m in shared.items()}
        return deliveries, ServerCollect(self.setup, self.graph, self.keys, commitments, tuple(flagged))


@dataclass(frozen=True)
class ServerCollect:
    """Stage 3: sum the masked inputs in Z_2^b as they arrive; ask the survivors for shares."""

    setup: RoundSetup
    graph: dict[int, frozenset[int]]
    keys: dict[int, AdvertiseKeys]
    commitments: dict[int, bytes]
    flagged: tuple[Flag, ...] = ()

    def collect(self, messages: Sequence[MaskedInput]) -> tuple[dict[int, UnmaskRequest], ServerUnmask]:
        """Unmask requests for the clients whose masked input arrived (U3); fewer than t of them aborts."""
        setup = self.setup
        total = ModularSum.start(setup.length, setup.ring_bits, len(setup.clients))
        flagged = list(self.flagged)
        included: list[int] = []
        for u, m in sorted(_unique(messages, self.commitments).items()):
            try:
                total.add(m.payload)
            except (CodecError, ValueError) as exc:
                flagged.append(Flag(u, f"masked input refused: {exc}"))
                continue
            included.append(u)
            flagged += [
                Flag(v, f"its sealed share for client {u} failed to open", reporter=u)
                for v in m.bad_shares_from
                if v in self.graph[u]
            ]
        if len(included) < setup.threshold:
            raise SecAggAbort(
                f"only {len(included)} masked inputs arrived, threshold is {setup.threshold}", tuple(flagged)
            )
        survivors = tuple(included)
        dropped = tuple(sorted(set(self.commitments) - set(included)))
        requests = {v: UnmaskRequest(v, survivors, dropped) for v in survivors}
        return requests, ServerUnmask(self, total, survivors, dropped, tuple(flagged))


@dataclass(frozen=True)
class _Recovery:
    secret: bytes | None
    bad_holders: tuple[int, ...]


def _recover(shares: dict[int, bytes], setup: RoundSetup, verify: Callable[[bytes], bool]) -> _Recovery:
    """The owner's secret from its holders' shares, checked by `verify`, naming holders off the polynomial."""
    holders = sorted(h for h, s in shares.items() if len(s) == 32)
    t = setup.threshold
    if len(holders) < t:
        return _Recovery(None, ())
    points = {h: setup.point(h) for h in holders}
    for subset in itertools.islice(itertools.combinations(holders, t), MAX_SUBSETS):
        rest = [h for h in holders if h not in subset]
        try:
            values = secagg.interpolate(
                [points[h] for h in subset], [shares[h] for h in subset], [0, *(points[h] for h in rest)]
            )
        except CodecError:
            continue  # a non-canonical share in this subset
        if verify(values[0]):
            bad = tuple(h for h, v in zip(rest, values[1:], strict=True) if v != shares[h])
            return _Recovery(values[0], bad)
    return _Recovery(None, tuple(holders))


@dataclass(frozen=True)
class ServerUnmask:
    """Stage 4: rebuild survivors' self-mask seeds and dropped clients' pair keys, then remove every mask."""

    collected: ServerCollect
    total: ModularSum = field(repr=False)
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    flagged: tuple[Flag, ...] = ()

    def finish(self, messages: Sequence[UnmaskResponse]) -> SecAggResult:
        """The unmasked sum over the survivors, or SecAggAbort naming who cannot be unmasked."""
        c = self.collected
        setup, graph = c.setup, c.graph
        responses = _unique(messages, self.survivors)
        flagged = list(self.flagged)
        self_shares: dict[int, dict[int, bytes]] = {u: {} for u in self.survivors}
        key_shares: dict[int, dict[int, bytes]] = {u: {} for u in self.dropped}
        for v, r in responses.items():
            for s in r.self_mask_shares:
                if s.owner in self_shares and v in graph[s.owner]:
                    self_shares[s.owner][v] = s.share
            for s in r.key_shares:
                if s.owner in key_shares and v in graph[s.owner]:
                    key_shares[s.owner][v] = s.share
        seeds: list[bytes] = []
        signs: list[int] = []
        missing: list[int] = []

        def record(owner: int, kind: str, rec: _Recovery) -> None:
            if rec.secret is not None:
                flagged.extend(
                    Flag(h, f"revealed a {kind} share of client {owner} that does not match the others")
                    for h in rec.bad_holders
                )
                return
            missing.append(owner)
            if (
                rec.bad_holders
            ):  # enough shares, but no t of them rebuild the commitment: the dealer's fault or many liars
                flagged.append(
                    Flag(owner, f"no {setup.threshold} of its {kind} shares rebuild what it committed to")
                )

        def commits_to(want: bytes) -> Callable[[bytes], bool]:
            return lambda seed: secagg.derive_scalar(seed, setup.info(b"commit")) == want

        def is_secret_of(public: bytes) -> Callable[[bytes], bool]:
            return lambda secret: secagg.public_key(secret) == public

        for u in self.survivors:
            rec = _recover(self_shares[u], setup, commits_to(c.commitments[u]))
            record(u, "self-mask", rec)
            if rec.secret is not None:
                seeds.append(rec.secret)
                signs.append(-1)
        for u in self.dropped:
            rec = _recover(key_shares[u], setup, is_secret_of(c.keys[u].mask_public))
            record(u, "pair-key", rec)
            if rec.secret is None:
                continue
            masked_with = sorted(graph[u] & set(self.survivors))
            publics = [c.keys[v].mask_public for v in masked_with]
            seeds += secagg.agree_many(rec.secret, publics, setup.info(b"pair-mask"))
            signs += [-1 if v < u else 1 for v in masked_with]  # v added +stream when v < u: take it back
        if missing:
            raise SecAggAbort(
                f"cannot rebuild the masks of clients {sorted(missing)}: "
                f"fewer than {setup.threshold} matching shares",
                tuple(flagged),
            )
        total = self.total.finish()
        secagg.apply_masks(total, seeds, signs, setup.ring_bits, setup.prg)
        everyone = set(setup.clients)
        return SecAggResult(
            total=total,
            included=self.survivors,
            dropped=tuple(sorted(everyone - set(self.survivors))),
            flagged=tuple(flagged),
        )
