"""The whole SecAgg+ round in one process, for tests and benchmarks: drop chosen clients at chosen stages,
corrupt chosen shares, and time every stage on the client and on the server side."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from fedcodec import secagg
from fedcore.secure.client import ClientAdvertise, ClientMask, ClientShare, ClientUnmask, start_client
from fedcore.secure.encoding import RingConfig, RingElements, decode_sum, unrounded_update
from fedcore.secure.messages import (
    MASK_PRG,
    AdvertiseKeys,
    MaskedInput,
    RevealedShare,
    RoundSetup,
    SecAggResult,
    ShareKeys,
    UnmaskResponse,
)
from fedcore.secure.params import SecAggParams
from fedcore.secure.server import start_server

__all__ = ["STAGES", "RoundReport", "make_setup", "run_secagg_round", "secure_sum"]

STAGES = ("advertise", "share", "mask", "unmask")

# A client's update, the round's ring and its 32-byte rounding seed -> its ring elements.
RingInput = Callable[[NDArray[np.float32], RingConfig, bytes], RingElements]


@dataclass(frozen=True)
class RoundReport:
    """A simulated round: its result, seconds per stage (all clients together; server), bytes uploaded."""

    result: SecAggResult
    client_seconds: dict[str, float]
    server_seconds: dict[str, float]
    upload_bytes: int

    @property
    def seconds(self) -> float:
        """Wall time of the round's protocol work, clients and server together."""
        return sum(self.client_seconds.values()) + sum(self.server_seconds.values())


def make_setup(
    clients: tuple[int, ...],
    length: int,
    params: SecAggParams,
    ring_bits: int,
    seed: int = 0,
    prg: str = MASK_PRG,
) -> RoundSetup:
    """The round announcement the server sends (round id and graph seed derived from `seed`; mask PRG)."""
    base = seed.to_bytes(8, "little")
    return RoundSetup(
        round_id=secagg.derive_scalar(base, b"round id")[:16],
        clients=clients,
        degree=params.degree,
        threshold=params.threshold,
        ring_bits=ring_bits,
        length=length,
        graph_seed=secagg.derive_scalar(base, b"graph seed"),
        prg=prg,
    )


class _Stopwatch:
    """Seconds since the previous lap, charged to one stage on the client or the server side."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.client = dict.fromkeys(STAGES, 0.0)
        self.server = dict.fromkeys(STAGES, 0.0)
        self._clock = clock
        self._last = clock()

    def lap(self, stage: str, *, server: bool = False) -> None:
        now = self._clock()
        (self.server if server else self.client)[stage] += now - self._last
        self._last = now


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


def run_secagg_round(
    codes: Mapping[int, RingElements],
    params: SecAggParams,
    ring_bits: int,
    *,
    drop: Mapping[str, Collection[int]] | None = None,
    seed: int = 0,
    tamper_sealed: Collection[tuple[int, int]] = (),
    tamper_revealed: Collection[tuple[int, int]] = (),
    clock: Callable[[], float] = time.perf_counter,
    prg: str = MASK_PRG,
) -> RoundReport:
    """One SecAgg+ round over `codes` (client id -> ring elements or an update to round), all four stages.

    `drop[stage]` lists clients that go silent at that stage (send nothing from it on).
    `tamper_sealed` holds (sender, recipient) pairs whose sealed share is corrupted in transit;
    `tamper_revealed` holds (holder, owner) pairs whose revealed share is replaced by a wrong one.
    Client secrets derive from `seed` (simulation only; real clients draw a fresh random seed).
    Stages are timed with `clock` (`time.process_time` counts CPU seconds on a busy machine); `prg` is
    the mask keystream the setup announces.
    """
    drop = drop or {}
    unknown = set(drop) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; stages are {STAGES}")
    clients = tuple(sorted(codes))
    setup = make_setup(clients, next(iter(codes.values())).size, params, ring_bits, seed, prg)
    base = seed.to_bytes(8, "little")
    gone: set[int] = set()
    watch = _Stopwatch(clock)

    def alive(stage: str, ids: Collection[int]) -> list[int]:
        gone.update(drop.get(stage, ()))
        return [c for c in sorted(ids) if c not in gone]

    server = start_server(setup)
    c1: dict[int, ClientAdvertise] = {
        c: start_client(setup, c, secagg.derive_scalar(base, b"client %d" % c)) for c in clients
    }
    watch.lap("advertise", server=True)

    adverts: list[AdvertiseKeys] = []
    c2: dict[int, ClientShare] = {}
    for c in alive("advertise", c1):
        adverts.append((pair := c1[c].advertise())[0])
        c2[c] = pair[1]
    watch.lap("advertise")
    keys, server2 = server.collect(adverts)
    watch.lap("advertise", server=True)

    shares: list[ShareKeys] = []
    c3: dict[int, ClientMask] = {}
    for c in alive("share", set(c2) & set(keys)):
        msg, c3[c] = c2[c].share(keys[c])
        sealed = tuple(
            replace(s, ciphertext=_flip(s.ciphertext)) if (c, s.recipient) in tamper_sealed else s
            for s in msg.shares
        )
        shares.append(replace(msg, shares=sealed))
    watch.lap("share")
    deliveries, server3 = server2.collect(shares)
    watch.lap("share", server=True)

    masked: list[MaskedInput] = []
    c4: dict[int, ClientUnmask] = {}
    for c in alive("mask", set(c3) & set(deliveries)):
        msg4, c4[c] = c3[c].mask(deliveries[c], codes[c])
        masked.append(msg4)
    watch.lap("mask")
    requests, server4 = server3.collect(masked)
    watch.lap("mask", server=True)

    responses: list[UnmaskResponse] = []
    for c in alive("unmask", set(c4) & set(requests)):
        r = c4[c].unmask(requests[c])
        if any(h == c for h, _ in tamper_revealed):

            def bad(s: RevealedShare, holder: int = c) -> RevealedShare:
                if (holder, s.owner) not in tamper_revealed:
                    return s
                return replace(s, share=secagg.derive_scalar(s.share, b"tampered"))

            r = replace(
                r,
                self_mask_shares=tuple(map(bad, r.self_mask_shares)),
                key_shares=tuple(map(bad, r.key_shares)),
            )
        responses.append(r)
    watch.lap("unmask")
    result = server4.finish(responses)
    watch.lap("unmask", server=True)
    upload = len(masked[0].payload) if masked else 0
    return RoundReport(result, watch.client, watch.server, upload)


def secure_sum(
    updates: Mapping[int, NDArray[np.float32]],
    config: RingConfig,
    params: SecAggParams,
    *,
    clock: Callable[[], float] = time.perf_counter,
    ring_input: RingInput = unrounded_update,
    **kwargs: object,
) -> tuple[NDArray[np.float32], RoundReport, dict[str, float]]:
    """The float sum of the surviving clients' updates through a full SecAgg+ round, and the seconds spent.

    `ring_input` turns one client's update into its ring elements (default: rounded as it is masked;
    distributed DP's `DistributedDP.ring_input` also clips and adds the client's noise share).
    """
    n = next(iter(updates.values())).size
    t0 = clock()

    def rounding_seed(c: int) -> bytes:
        return secagg.derive_scalar(c.to_bytes(8, "little"), b"rounding %d" % config.seed)

    codes = {c: ring_input(x, config, rounding_seed(c)) for c, x in updates.items()}
    t1 = clock()
    report = run_secagg_round(codes, params, config.ring_bits, clock=clock, **kwargs)  # type: ignore[arg-type]
    t2 = clock()
    total = decode_sum(report.result.total, len(report.result.included), n, config)
    t3 = clock()
    return total, report, {"encode": t1 - t0, "decode": t3 - t2, "protocol": t2 - t1}
