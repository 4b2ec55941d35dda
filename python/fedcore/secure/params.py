"""Choosing SecAgg+'s neighbour count k and threshold t for n clients, a dropout rate and an adversary.

Every bound is a union bound over the n clients on an exact binomial tail, so the choice can be
checked by hand; `SecAggParams.reason` spells the numbers out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SecAggParams", "choose_params"]


@dataclass(frozen=True)
class SecAggParams:
    """Neighbours per client (`degree`, k) and Shamir threshold (t), with why they were chosen."""

    degree: int
    threshold: int
    reason: str

    def __post_init__(self) -> None:
        if self.degree < 1 or not 1 <= self.threshold <= self.degree:
            raise ValueError(f"need 1 <= threshold <= degree, got t={self.threshold}, k={self.degree}")


def _log2_tail_ge(k: int, p: float, t: int) -> float:
    """log2 P[Binomial(k, p) >= t] (-inf when impossible)."""
    if t <= 0:
        return 0.0
    if t > k or p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return 0.0
    logs = [
        math.lgamma(k + 1)
        - math.lgamma(i + 1)
        - math.lgamma(k - i + 1)
        + i * math.log(p)
        + (k - i) * math.log1p(-p)
        for i in range(t, k + 1)
    ]
    top = max(logs)
    return (top + math.log(sum(math.exp(v - top) for v in logs))) / math.log(2)


def _log2_hypergeom_tail_ge(population: int, bad: int, draws: int, t: int) -> float:
    """log2 P[at least t bad among `draws` drawn without replacement from `population` holding `bad`]."""
    hits = sum(
        math.comb(bad, i) * math.comb(population - bad, draws - i)
        for i in range(max(t, 0), min(bad, draws) + 1)
    )
    return -math.inf if hits == 0 else math.log2(hits) - math.log2(math.comb(population, draws))


def _bounds(
    n: int,
    k: int,
    dropout: float,
    corrupt: float,
    security_bits: int,
    correctness_bits: int,
    malicious_server: bool,
) -> tuple[int, int, int] | None:
    """(t_low, t_high, c_max) for degree k, or None when no threshold meets every bound."""
    log_n = math.log2(n)
    # c_max: colluding neighbours of any one client, exceeded with probability <= 2^-security_bits,
    # when ceil(corrupt * n) clients collude and the seeded graph places them at random.
    colluding = math.ceil(corrupt * n)
    c_max = next(
        c
        for c in range(k + 1)
        if log_n + _log2_hypergeom_tail_ge(n - 1, colluding, k, c + 1) <= -security_bits
    )
    t_low = c_max + 1  # colluding neighbours alone hold fewer than t shares
    if malicious_server:
        t_low = max(t_low, (k + c_max) // 2 + 1)  # two disjoint t-sets of shares cannot both exist
    # t_high: the largest t that at least t of k neighbours survive, failing w.p. <= 2^-correctness_bits.
    t_high = 0
    for t in range(k, 0, -1):
        if log_n + _log2_tail_ge(k, dropout, k - t + 1) <= -correctness_bits:
            t_high = t
            break
    if t_high < t_low:
        return None
    return t_low, t_high, c_max


def choose_params(
    n: int,
    *,
    dropout: float = 0.1,
    corrupt: float = 0.05,
    security_bits: int = 40,
    correctness_bits: int = 20,
    malicious_server: bool = False,
) -> SecAggParams:
    """The smallest even k (Harary graph) and smallest safe t for n clients, or a ValueError saying why not.

    `corrupt` is the fraction of clients that collude with the server (ceil(corrupt * n) of them);
    `dropout` the chance that one client drops out, independently. Bounds (each over all n
    clients): fewer than t colluding neighbours (privacy, 2^-security_bits);
    at least t surviving neighbours (the round completes, 2^-correctness_bits); with
    `malicious_server`, 2t > k + c_max so no server can collect both shares of one client; and
    no run of k/2 consecutive ring positions all dropped or colluding, so the honest survivors
    stay connected and the server learns nothing finer than their sum (2^-security_bits).
    """
    if n < 2:
        raise ValueError(f"secure aggregation needs at least 2 clients, got {n}")
    if not (0.0 <= dropout < 1.0 and 0.0 <= corrupt < 1.0 and dropout + corrupt < 1.0):
        raise ValueError(f"need 0 <= dropout, corrupt and dropout + corrupt < 1, got {dropout}, {corrupt}")
    bad = dropout + corrupt
    for k in [*range(2, n - 1, 2), n - 1]:
        complete = k == n - 1
        if not complete and (bad > 0 and math.log2(n) + (k // 2) * math.log2(bad) > -security_bits):
            continue
        found = _bounds(n, k, dropout, corrupt, security_bits, correctness_bits, malicious_server)
        if found is None:
            continue
        t_low, t_high, c_max = found
        graph = "complete graph (original SecAgg)" if complete else f"Harary graph with k={k}"
        reason = (
            f"{graph} for n={n}: "
            f"t={t_low} exceeds the {c_max} colluding neighbours seen with prob >= 1-2^-{security_bits} "
            f"when {math.ceil(corrupt * n)} clients collude"
            + (
                f" and (k + {c_max}) / 2, so a malicious server cannot gather both shares of a client"
                if malicious_server
                else ""
            )
            + f"; up to t={t_high} neighbours survive a dropout rate {dropout} "
            + f"with prob >= 1-2^-{correctness_bits}"
            + (
                ""
                if complete
                else f"; {k // 2} consecutive dropped-or-colluding ring positions (disconnecting the honest "
                f"survivors) occur with prob <= 2^{math.log2(n) + (k // 2) * math.log2(max(bad, 1e-300)):.1f}"
            )
        )
        return SecAggParams(degree=k, threshold=t_low, reason=reason)
    raise ValueError(
        f"no degree and threshold for n={n} meet dropout {dropout}, corrupt {corrupt} at "
        f"2^-{security_bits} security and 2^-{correctness_bits} failure: lower the rates or the bits"
    )
