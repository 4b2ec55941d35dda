"""Distributed DP on the SecAgg ring: each client clips, rounds and adds a Skellam share before masking.

The server only ever unmasks the noised integer sum. Design (Agarwal, Kairouz, Liu 2021, "The Skellam
Mechanism for Differentially Private Federated Learning"; Kairouz, Liu, Steinke 2021 for the rounding):

- Grid. The ring's quantizer maps [-secagg_clip, secagg_clip] to 0..levels, step g = 2 secagg_clip / levels.
  A client's centered code c = code - levels/2 is its update in grid units, rounded stochastically.
- Norm. The update is clipped to L2 norm C, then rounded *conditionally*: the rounding is redrawn until
  ||c||_2 <= D = sqrt(c0^2 + d/4 + sqrt(2 ln(1/beta)) (c0 + sqrt(d)/2)), c0 = C/g (Kairouz et al. 2021,
  Lemma: one draw fails with probability <= beta). So D bounds every client's contribution exactly.
  Clamping coordinates to the ring's range only shrinks the vector.
- Noise. Replacing one client moves the integer sum by S2 <= 2D in L2 and S1 <= min(S2^2, sqrt(d) S2) in L1.
  Skellam noise of variance V = 2 mu per coordinate is (alpha, eps(alpha))-RDP with
  eps(alpha) = alpha S2^2 / (4 mu) + min(((2 alpha - 1) S2^2 + 6 S1) / (16 mu^2), 3 S1 / (4 mu))
  (Agarwal et al. 2021, Thm 3.5). For alpha >= 1 this is at most the Gaussian's alpha S'^2 / (2 V) with
  S'^2 = S2^2 + min((2 S2^2 + 6 S1) / (2 V), 3 S1): the Skellam is accounted as the Gaussian of noise
  multiplier z_eff = 2 sqrt(V) / S' (relative to the per-client bound D, as central DP's z is to C), and V is
  the smallest variance with z_eff >= z, so the accountant's epsilon at z is an upper bound.
- Shares. Skellam(mu) is a sum of n Skellam(mu / n) exactly, so `noise_floor` clients' shares reach V.
  Each client adds V / noise_floor; if fewer than `noise_floor` clients survive, the sum carries less noise
  than the accountant charged and must not be released (the transport discards that round).
- Ring. The unmasked sum lies in [-T, n levels + T], T a Bernstein bound on the summed noise exceeded in
  any coordinate with probability <= 2^-WRAP_SECURITY_BITS; the ring is widened by `headroom_bits` so that
  T fits below zero and above n levels, and a ring without that room is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedcodec import secagg
from fedcore.privacy.accountant import check_noise_multiplier
from fedcore.privacy.central import clip_update
from fedcore.privacy.spec import check_clip
from fedcore.secure.encoding import RingConfig, encode_update, ring_margin

# One conditional-rounding draw exceeds the norm bound with probability <= ROUNDING_BETA (then it is redrawn).
ROUNDING_BETA = math.exp(-0.5)
MAX_ROUNDING_DRAWS = 64
# Any coordinate of a round's noised sum leaves the ring's window with probability <= 2^-WRAP_SECURITY_BITS.
WRAP_SECURITY_BITS = 40


@dataclass(frozen=True)
class SkellamShares:
    """Split integer noise of variance `total_variance` over `n_shares` clients, exactly.

    Skellam(mu) = Poisson(mu) - Poisson(mu) has variance 2 mu, and Poissons add: n shares of Skellam(mu/n)
    sum to Skellam(mu) exactly (a sum of discrete Gaussians is only close to a discrete Gaussian).
    """

    total_variance: float
    n_shares: int

    def __post_init__(self) -> None:
        if not (self.total_variance > 0.0 and math.isfinite(self.total_variance)):
            raise ValueError(f"total noise variance must be a finite number > 0, got {self.total_variance}")
        if self.n_shares < 1:
            raise ValueError(f"n_shares must be >= 1, got {self.n_shares}")

    @classmethod
    def for_gaussian(cls, noise_multiplier: float, clip: float, scale: float, n_shares: int) -> SkellamShares:
        """Shares summing to the variance of N(0, (z C)^2) in fixed point x -> round(x * scale)."""
        std = noise_multiplier * clip * scale
        return cls(std * std, n_shares)

    @property
    def share_mu(self) -> float:
        """Each Poisson's mean in one client's share: total variance / (2 n)."""
        return self.total_variance / (2.0 * self.n_shares)

    def sample(self, size: int, rng: np.random.Generator) -> NDArray[np.int64]:
        """One client's share: `size` independent Skellam(mu/n) integers from its own seeded generator."""
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        mu = self.share_mu
        return rng.poisson(mu, size).astype(np.int64) - rng.poisson(mu, size).astype(np.int64)


def skellam_tail(variance: float, coordinates: int, security_bits: int = WRAP_SECURITY_BITS) -> float:
    """T with P[some |Skellam| coordinate >= T] <= 2^-security_bits over `coordinates` of them.

    Bernstein: log E e^{l X} = mu (e^l + e^-l - 2) <= V l^2 / (2 (1 - l/3)), so P[|X| >= t] <=
    2 exp(-t^2 / (2 (V + t/3))); a union bound over the coordinates sets the log term L.
    """
    log_term = math.log(2.0 * max(coordinates, 1)) + security_bits * math.log(2.0)
    return log_term / 3.0 + math.sqrt(log_term * log_term / 9.0 + 2.0 * variance * log_term)


@dataclass(frozen=True)
class DistributedDP:
    """One round's distributed DP: L2 clip C (float units), the accountant's z, and the noise floor.

    `noise_floor` is the fewest surviving clients whose shares together reach the designed variance.
    """

    clip: float
    noise_multiplier: float
    noise_floor: int

    def __post_init__(self) -> None:
        check_clip(self.clip)
        check_noise_multiplier(self.noise_multiplier)
        if self.noise_floor < 1:
            raise ValueError(f"noise_floor must be >= 1, got {self.noise_floor}")

    @classmethod
    def for_round(cls, clip: float, noise_multiplier: float, clients: int, tolerance: float) -> DistributedDP:
        """Noise sized so that a `tolerance` fraction of the round's `clients` may drop mid-protocol."""
        if not 0.0 <= tolerance < 1.0:
            raise ValueError(f"dropout tolerance must lie in [0, 1), got {tolerance}")
        return cls(clip, noise_multiplier, max(1, math.ceil(clients * (1.0 - tolerance) - 1e-9)))

    # -- the design, all in grid units ------------------------------------------------------------------

    def grid_clip(self, ring: RingConfig) -> float:
        """C in grid units: C / g with g = 2 secagg_clip / levels."""
        return self.clip * ring.levels / (2.0 * ring.clip)

    def norm_bound(self, ring: RingConfig, d: int) -> float:
        """D: every client's centered integer code has L2 norm <= D (conditional rounding enforces it)."""
        c0 = self.grid_clip(ring)
        slack = math.sqrt(2.0 * math.log(1.0 / ROUNDING_BETA)) * (c0 + math.sqrt(d) / 2.0)
        return math.sqrt(c0 * c0 + d / 4.0 + slack)

    def _sensitivities(self, ring: RingConfig, d: int) -> tuple[float, float]:
        s2 = 2.0 * self.norm_bound(ring, d)  # replace-one: one client's code c becomes another c'
        return s2, min(s2 * s2, math.sqrt(d) * s2)

    def effective_noise_multiplier(self, ring: RingConfig, d: int, variance: float) -> float:
        """z_eff of Skellam noise of `variance`: the Gaussian whose RDP bounds the Skellam's at all orders."""
        s2, s1 = self._sensitivities(ring, d)
        inflated = s2 * s2 + min((2.0 * s2 * s2 + 6.0 * s1) / (2.0 * variance), 3.0 * s1)
        return 2.0 * math.sqrt(variance) / math.sqrt(inflated)

    def total_variance(self, ring: RingConfig, d: int) -> float:
        """V: the smallest Skellam variance of the sum with z_eff >= z (solves V^2 - a V - b = 0)."""
        z = self.noise_multiplier
        s2, s1 = self._sensitivities(ring, d)
        a = z * z * s2 * s2 / 4.0
        b = z * z * (2.0 * s2 * s2 + 6.0 * s1) / 8.0
        return (a + math.sqrt(a * a + 4.0 * b)) / 2.0

    def shares(self, ring: RingConfig, d: int) -> SkellamShares:
        """Each client's share: V / noise_floor."""
        return SkellamShares(self.total_variance(ring, d), self.noise_floor)

    def wrap_tail(self, ring: RingConfig, d: int) -> float:
        """T: up to `ring.max_clients` shares stay within +-T in every coordinate but w.p. 2^-40."""
        share = self.shares(ring, d)
        return skellam_tail(share.total_variance * ring.max_clients / share.n_shares, d)

    def headroom_bits(self, ring: RingConfig, d: int) -> int:
        """The fewest extra ring bits whose margin below zero and above max_clients x levels holds T."""
        tail = self.wrap_tail(ring, d)
        for extra in range(0, 33 - ring.ring_bits + ring.headroom_bits):
            if ring_margin(ring.with_headroom(extra)) >= tail:
                return extra
        raise ValueError(
            f"the summed Skellam noise reaches {tail:.0f} codes, more than a 32-bit ring holds beside "
            f"{ring.max_clients} x {ring.bits}-bit codes: lower --secagg-bits, raise --secagg-clip or lower "
            "the noise"
        )

    def check_ring(self, ring: RingConfig, d: int) -> None:
        """Refuse a ring whose margin cannot hold the noise tail: the noised sum could wrap."""
        tail = self.wrap_tail(ring, d)
        if ring_margin(ring) < tail:
            raise ValueError(
                f"the {ring.ring_bits}-bit ring leaves a margin of {ring_margin(ring)} codes, but the summed "
                f"Skellam noise of {ring.max_clients} clients reaches {tail:.0f}: the sum could wrap; it "
                f"needs {self.headroom_bits(ring, d)} headroom bits"
            )

    # -- the client's ring input --------------------------------------------------------------------------

    def rounded_codes(
        self, x: NDArray[np.float32], ring: RingConfig, rounding_seed: bytes
    ) -> NDArray[np.uint32]:
        """The update clipped to C and rounded onto the grid, redrawn until its centered norm is <= D."""
        clipped, _ = clip_update(np.ascontiguousarray(x, dtype=np.float32).reshape(-1), self.clip)
        codes = encode_update(clipped, ring, rounding_seed)
        bound = self.norm_bound(ring, codes.size)
        center = ring.levels / 2.0
        for draw in range(1, MAX_ROUNDING_DRAWS + 1):
            if float(np.linalg.norm(codes.astype(np.float64) - center)) <= bound:
                return codes
            codes = encode_update(clipped, ring, secagg.derive_scalar(rounding_seed, b"redraw %d" % draw))
        raise ValueError(f"conditional rounding failed {MAX_ROUNDING_DRAWS} times (norm bound {bound:.1f})")

    def noise_share(self, ring: RingConfig, d: int, rounding_seed: bytes) -> NDArray[np.int64]:
        """The client's Skellam share, from a stream derived from its own seed (not the rounding's)."""
        noise_seed = secagg.derive_scalar(rounding_seed, b"skellam share")
        return self.shares(ring, d).sample(d, np.random.default_rng(list(noise_seed)))

    def ring_input(
        self, x: NDArray[np.float32], ring: RingConfig, rounding_seed: bytes
    ) -> NDArray[np.uint32]:
        """A client's SecAgg input: clip to C, round conditionally onto the grid, add its Skellam share.

        Same signature as `fedcore.secure.encode_update`, so the protocol takes either. The rounding and the
        noise derive from the client's own 32-byte seed (a deployment draws it fresh and keeps it secret).
        A ring without the headroom for the noise is refused before anything is sent.
        """
        codes = self.rounded_codes(x, ring, rounding_seed)
        self.check_ring(ring, codes.size)
        noise = self.noise_share(ring, codes.size, rounding_seed)
        wrapped = np.mod(codes.astype(np.int64) + noise, 1 << ring.ring_bits)
        noised: NDArray[np.uint32] = wrapped.astype(np.uint32)
        return noised
