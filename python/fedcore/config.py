"""One validated, frozen FLConfig per simulation: defaults, then a TOML file, then command-line flags."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedcore.backends.user import DEVICES, is_import_path
from fedcore.config_files import check_keys, read_config_file
from fedcore.errors import flag_for
from fedcore.selection import SELECTION_NAMES
from fedcore.strategies import Strategy, make_strategy

if TYPE_CHECKING:
    from fedcore.adaptive import CodecLadder
    from fedcore.compression import CodecSpec
    from fedcore.data.spec import DatasetSpec, PartitionSpec
    from fedcore.partial.selectors import PartialSpec
    from fedcore.personalize.spec import PersonalizeSpec
    from fedcore.privacy.spec import DPSpec
    from fedcore.robust.attacks import Attack
    from fedcore.robust.spec import AggregatorSpec
    from fedcore.server.fedbuff import StalenessSpec
    from fedcore.strategies.spec import StrategySpec
    from fedcore.uplink.shift import ShiftSpec

BACKENDS = ("torch", "mlx", "sklearn")
MODELS = ("mlp", "cnn1d", "logreg")


def _spec_kinds() -> dict[str, tuple[Callable[[str], object], Any]]:
    """Each spec field's parser and type, imported when first needed (spec modules import config's users)."""
    from fedcore.adaptive import CodecLadder
    from fedcore.compression import CodecSpec
    from fedcore.data.spec import DatasetSpec, PartitionSpec
    from fedcore.partial.selectors import PartialSpec
    from fedcore.personalize.spec import PersonalizeSpec
    from fedcore.privacy.spec import DPSpec
    from fedcore.robust.attacks import Attack
    from fedcore.robust.attacks import parse as parse_attack
    from fedcore.robust.spec import AggregatorSpec
    from fedcore.server.fedbuff import StalenessSpec  # async (FedBuff)
    from fedcore.strategies.spec import StrategySpec
    from fedcore.uplink.shift import ShiftSpec

    return {
        "dataset": (DatasetSpec.parse, DatasetSpec),
        "partition": (PartitionSpec.parse, PartitionSpec),
        "strategy": (StrategySpec.parse, StrategySpec),
        "codec": (CodecSpec.parse, CodecSpec),
        "downlink_codec": (CodecSpec.parse, CodecSpec),
        "partial": (PartialSpec.parse, PartialSpec),
        "adaptive_ladder": (CodecLadder.parse, CodecLadder),
        "personalize": (PersonalizeSpec.parse, PersonalizeSpec),
        "aggregator": (AggregatorSpec.parse, AggregatorSpec),
        "dp": (DPSpec.parse, DPSpec),
        "attack": (parse_attack, Attack),
        "shift": (ShiftSpec.parse, ShiftSpec),
        "staleness": (StalenessSpec.parse, StalenessSpec),  # async (FedBuff)
    }


SPEC_FIELDS = (
    "dataset",
    "partition",
    "strategy",
    "codec",
    "downlink_codec",
    "partial",
    "adaptive_ladder",
    "personalize",
    "aggregator",
    "dp",
    "attack",
    "shift",
    "staleness",  # async (FedBuff)
)  # typed specs: text only at the TOML/flag edge and in summary.json
_CODEC_FIELDS = ("codec", "downlink_codec", "adaptive_ladder")  # fedcodec's messages do not name the spec


def _parsed(name: str, text: str) -> Any:
    """A spec field's default, parsed when a config is made."""
    return _spec_kinds()[name][0](text)


@dataclass(frozen=True)
class FLConfig:
    """A whole federated simulation; the defaults are the `fedcore sim` run with no flags."""

    dataset: DatasetSpec = field(default_factory=lambda: _parsed("dataset", "digits"))
    clients: int = 100
    per_round: int = 10
    rounds: int = 60
    local_epochs: int = 10
    lr: float = 0.1
    batch_size: int = 8
    momentum: float = 0.0
    weight_decay: float = 0.0
    partition: PartitionSpec = field(default_factory=lambda: _parsed("partition", "dirichlet:0.5"))
    backend: str = "torch"
    model: str = "mlp"
    strategy: StrategySpec = field(default_factory=lambda: _parsed("strategy", "fedavg"))
    server_lr: float | None = (
        None  # None: the strategy's own default (1.0 for averaging, 0.01 for FedAdam ...)
    )
    server_beta1: float = 0.9
    server_beta2: float = 0.99
    server_tau: float = 1e-3
    codec: CodecSpec | None = None
    # clients get the encoded difference to the model they last rebuilt
    downlink_codec: CodecSpec | None = None
    error_feedback: bool = False
    # share a masked subset per round: random:F, topk:F, gradient:F, structured:F, fixed:MASK.npy
    partial: PartialSpec | None = None
    powersgd: int | None = None  # PowerSGD rank; replaces the uplink codec
    adaptive_deadline_s: float | None = None  # each client picks the best ladder codec that meets it
    adaptive_ladder: CodecLadder | None = None  # codec specs, best first; None: the default ladder
    # finetune:E, fedrep[:HEAD[,BODY]], ditto:LAMBDA; after the last round
    personalize: PersonalizeSpec | None = None
    local_head: bool = False  # FedRep in rounds: each client keeps its own head; only the body is shared
    ditto_rounds: bool = False  # Ditto in rounds: with personalize=ditto:LAMBDA, personal models every round
    # mean (streaming fold) or a collecting rule such as median
    aggregator: AggregatorSpec = field(default_factory=lambda: _parsed("aggregator", "mean"))
    dp: DPSpec | None = None  # central:CLIP | adaptive:QUANTILE (user-level) | local:CLIP,Z (DP-SGD)
    noise_multiplier: float | None = None  # central DP's sigma; or calibrated from target_epsilon
    target_epsilon: float | None = None  # calibrate sigma so the whole run spends this epsilon
    delta: float | None = None  # None: 0.1 / clients (user-level) or 0.1 / a client's examples (local)
    max_epsilon: float | None = None  # stop at the last round whose epsilon fits
    secagg: bool = False  # every round's sum through SecAgg+ (pairwise masks, dropout recovery)
    secagg_bits: int = 16  # bits per quantized coordinate; the ring adds ceil(log2(per_round)) more
    secagg_clip: float = 1.0  # each weighted coordinate is clipped to [-clip, clip] before quantization
    secagg_neighbors: int | None = None  # SecAgg+ graph degree k (None: chosen for the round's size)
    secagg_threshold: int | None = None  # Shamir threshold t (None: chosen with k)
    attack: Attack | None = (
        None  # simulated Byzantine clients: signflip, gauss, alie, ipm, minmax, labelflip ...
    )
    byzantine: float = 0.0  # share of the population that attacks
    exclude_suspects: bool = False  # leave clients flagged as suspects (mean suspicion > 1) out of selection
    selection: str = "random"
    poc_candidates: int | None = None
    dropout: float = 0.0
    stragglers: float = 0.0  # share of answering clients that run 1..E local epochs (FedProx paper)
    min_clients: int = 1
    min_battery: float = 20.0
    min_bandwidth_mbps: float = 1.0
    eval_clients: bool = False
    test_fraction: float = 0.2
    workers: int | None = None  # None: from the job (_default_workers); 0 or 1: in-process
    vectorize: bool | None = None  # clients train as one batched model; None: where the model allows
    seed: int = 0
    out: str = "runs/sim"
    device: str = "cpu"  # where torch models train: cpu | cuda | mps
    shift: ShiftSpec | None = None  # shifted compression: diana:ALPHA | ef21 (clients send C(update - shift))
    ef_decay: float | None = None  # error feedback: share of the residual kept per round a client is away
    # --- simulation engine (issue 14: Ray) ---
    engine: str = "process"  # process | ray: where simulated clients train; same workers, same numbers
    ray_address: str | None = None  # engine=ray: auto | HOST:PORT | ray://HOST:PORT; None: start a local Ray
    # --- async (FedBuff) and device speeds (issue 14, FedBuff part) ---
    asynchronous: bool = False  # FedBuff: the server steps whenever `buffer` updates arrived; no rounds
    buffer: int | None = None  # FedBuff's K: updates per server step (None: per_round)
    concurrency: int | None = None  # clients training at once (None: min(clients, 2 x buffer))
    staleness: StalenessSpec = field(default_factory=lambda: _parsed("staleness", "poly:0.5"))
    speed_spread: float | None = None  # slowest / fastest device; with it, `stragglers` = share of slow ones
    # --- end async ---
    # --- server memory (issue 18): see _check_server_memory ---
    server_memory: bool = False  # the server steps along the mean of every client's last update (MIFA)
    server_memory_age: int | None = None  # forget a remembered update after this many rounds
    server_shrink: bool = False  # the round's mean shrinks by its estimated signal share (James-Stein)

    def __post_init__(self) -> None:
        _parse_specs(self)
        _check_types(self)
        positive = {
            "clients": self.clients,
            "per_round": self.per_round,
            "rounds": self.rounds,
            "local_epochs": self.local_epochs,
            "batch_size": self.batch_size,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.per_round > self.clients:
            raise ValueError(f"per_round ({self.per_round}) cannot exceed clients ({self.clients})")
        if self.lr <= 0.0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.momentum < 0.0 or self.weight_decay < 0.0:
            raise ValueError("momentum and weight_decay must be >= 0")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.model not in MODELS and not is_import_path(self.model):
            from fedcore.errors import did_you_mean

            raise ValueError(
                f"model {self.model!r} is neither a built-in ({', '.join(MODELS)}) nor an import path "
                f"MODULE:FUNCTION to your own{did_you_mean(self.model, MODELS)}"
            )
        if self.device not in DEVICES:
            raise ValueError(f"unknown device {self.device!r}; choose from {', '.join(DEVICES)}")
        if self.selection not in SELECTION_NAMES:
            raise ValueError(f"selection must be one of {', '.join(SELECTION_NAMES)}, got {self.selection!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if not 0.0 <= self.stragglers <= 1.0:
            raise ValueError(f"stragglers must lie in [0, 1], got {self.stragglers}")
        if not 1 <= self.min_clients <= self.per_round:
            raise ValueError(
                f"min_clients must lie in [1, per_round={self.per_round}], got {self.min_clients}"
            )
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction}")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        sends_all = (
            (self.codec is None or self.codec.raw)
            and self.adaptive_deadline_s is None
            and self.partial is None
            and self.powersgd is None
        )
        if self.error_feedback and sends_all:
            raise ValueError(
                "error_feedback needs a lossy upload: --codec, --partial, --powersgd or --adaptive"
            )
        _check_upload_mode(self)
        _check_adaptive(self)
        _check_personal_rounds(self)
        _check_privacy(self)
        _check_attack(self)
        _check_secagg(self)
        _check_update_rules(self)
        _check_engine(self)
        _check_async(self)
        _check_server_memory(self)
        self.make_strategy()  # raises on a bad spec or server parameters

    def make_strategy(self) -> Strategy:
        return make_strategy(
            self.strategy, self.clients, self.server_lr, self.server_beta1, self.server_beta2, self.server_tau
        )

    @property
    def async_buffer(self) -> int:
        """FedBuff's K: updates per server step."""
        return self.buffer if self.buffer is not None else self.per_round

    @property
    def async_concurrency(self) -> int:
        """FedBuff's C: clients training at once."""
        if self.concurrency is not None:
            return self.concurrency
        return min(self.clients, 2 * self.async_buffer)

    @property
    def num_workers(self) -> int:
        """Worker processes to start; 0 means train in this process (see `_default_workers` for None)."""
        workers = self.workers if self.workers is not None else _default_workers(self)
        return 0 if workers <= 1 else min(workers, self.per_round)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, specs as their text: what summary.json, --print-config and a server announce."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: str(v) if k in SPEC_FIELDS and v is not None else v for k, v in values.items()}

    def run_settings(self) -> dict[str, Any]:
        """Everything that decides the numbers: the config minus where the output goes."""
        settings = self.to_dict()
        for where in ("out", *HOW_IT_RUNS):
            del settings[where]
        return settings


# --- simulation engine (issue 14: Ray) ---
ENGINES = ("process", "ray")
HOW_IT_RUNS = ("engine", "ray_address")  # fields that never change a number: left out of run_settings


def _check_engine(config: FLConfig) -> None:
    """A known engine; a Ray address only for the Ray engine, in a form Ray can connect to."""
    if config.engine not in ENGINES:
        raise ValueError(f"unknown engine {config.engine!r}; choose from {', '.join(ENGINES)}")
    address = config.ray_address
    if address is None:
        return
    if config.engine != "ray":
        raise ValueError("ray_address needs engine = ray")
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if address != "auto" and not (host and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"ray_address must be auto, HOST:PORT or ray://HOST:PORT, got {address!r}")


# --- end of the simulation engine block ---

CLIENTS_PER_WORKER = 128  # batched: fewer clients per worker than this train faster in one process


def _default_workers(config: FLConfig) -> int:
    """One per core, except where batched training makes a pool cost more than it saves."""
    # a batched worker trains its stack of clients in about the time of one client; a pool takes
    # ~1-2 s to start and pickles every round, so it only pays when each worker gets a big stack
    cores = os.cpu_count() or 1
    batched = (
        config.vectorize is not False
        and config.backend == "torch"
        and config.model in ("mlp", "logreg")
        and not (config.local_head or config.ditto_rounds)
    )
    return min(cores, config.per_round // CLIENTS_PER_WORKER) if batched else cores


def _check_upload_mode(config: FLConfig) -> None:
    """PowerSGD is the uplink's last stage, so it replaces the codec; partial sharing composes with both."""
    if config.partial is not None:
        config.partial.selector(config.seed)  # a fixed mask's file is read here, before any training
    if config.powersgd is None:
        return
    if config.powersgd < 1:
        raise ValueError(f"powersgd rank must be >= 1, got {config.powersgd}")
    if config.codec is not None and not config.codec.raw:
        raise ValueError("powersgd is the uplink's last stage and replaces the codec; drop --codec")


def _check_personal_rounds(config: FLConfig) -> None:
    """A local head fixes what is uploaded and how clients train; Ditto in rounds needs its lambda."""
    from fedcore.backends.base import TrainConfig

    method = config.personalize.method if config.personalize is not None else None
    if config.ditto_rounds:
        if method != "ditto":
            raise ValueError("ditto_rounds needs personalize=ditto:LAMBDA (--personalize ditto:LAMBDA)")
        if config.backend == "sklearn":
            raise ValueError("ditto_rounds pulls through a per-step gradient correction; use torch or mlx")
    if not config.local_head:
        return
    if method not in (None, "fedrep"):
        raise ValueError(
            f"local_head is FedRep in rounds; personalize may only be fedrep[:H[,B]], got {method}"
        )
    plain = TrainConfig()
    strategy = config.make_strategy()
    prox_only = replace(strategy.client_config(plain), prox_mu=0.0) == plain
    excluded = {
        "stragglers": config.stragglers > 0.0,
        "momentum": config.momentum > 0.0,
        f"strategy {config.strategy}": strategy.uses_control or not prox_only,
    }
    name = _first_set(excluded)
    if name is not None:
        raise ValueError(
            f"local_head trains fixed head and body epochs of plain SGD (FedProx's pull allowed); drop "
            f"{name} (stragglers pick their own epochs; momentum and SCAFFOLD change the local steps)"
        )


def _first_set(flags: Mapping[str, bool]) -> str | None:
    """The first of `flags` (in order) that is set: the one a refusal names; None when none is."""
    return next((name for name, is_set in flags.items() if is_set), None)


def _check_privacy(config: FLConfig) -> None:
    """A DP config that could not give the guarantee it names is refused before any training."""
    dp_fields = ("noise_multiplier", "target_epsilon", "delta", "max_epsilon")
    if config.dp is None:
        given = [f"--{name.replace('_', '-')}" for name in dp_fields if getattr(config, name) is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)} needs --dp central:CLIP | adaptive:QUANTILE | local:CLIP,Z "
                "| distributed:CLIP"
            )
        return
    from fedcore.privacy.accountant import check_delta, check_noise_multiplier

    spec = config.dp
    for name in ("target_epsilon", "max_epsilon"):
        value = getattr(config, name)
        if value is not None and not value > 0.0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {value}")
    if not spec.user_level:
        if config.backend not in ("torch", "mlx"):
            raise ValueError("--dp local:CLIP,Z (DP-SGD) runs on the torch or mlx backend")
        if config.noise_multiplier is not None or config.target_epsilon is not None:
            raise ValueError("--dp local:CLIP,Z sets its own noise multiplier Z; drop --noise-multiplier")
        return
    if (config.noise_multiplier is None) == (config.target_epsilon is None):
        raise ValueError(
            "--dp central/adaptive needs exactly one of --noise-multiplier Z or --target-epsilon E"
        )
    if config.noise_multiplier is not None:
        check_noise_multiplier(config.noise_multiplier)
    if spec.mode == "distributed" and not config.secagg:
        raise ValueError("--dp distributed:CLIP noises inside secure aggregation: add --secagg")
    if config.delta is not None:
        check_delta(config.delta, config.clients)
    strategy = config.make_strategy()
    if strategy.uses_control or config.strategy.name == "fednova":
        raise ValueError(
            f"--dp {spec.mode} averages clipped updates with equal weights; --strategy "
            f"{config.strategy} needs per-client weights or controls (use fedavg, fedprox or fedopt)"
        )
    if config.selection != "random":
        raise ValueError("--dp accounts for uniform K-of-N sampling; --selection must be random")
    if not config.aggregator.streaming:
        raise ValueError("--dp adds noise to the mean; --aggregator must be mean")


def _check_secagg(config: FLConfig) -> None:
    """Secure aggregation adds integer codes, so only what is linear in the updates composes with it."""
    set_without = [
        name for name in ("secagg_neighbors", "secagg_threshold") if getattr(config, name) is not None
    ]
    if not config.secagg:
        if set_without:
            raise ValueError(f"--{set_without[0].replace('_', '-')} needs --secagg")
        return
    from fedcore.secure import RingConfig
    from fedcore.sim.secure import secagg_fraction

    ring = RingConfig(
        config.secagg_clip, config.secagg_bits, max(config.per_round, 2), False, secagg_fraction(config)
    )
    distributed = config.dp is not None and config.dp.mode == "distributed"
    if config.dp is not None and distributed and config.noise_multiplier is not None:  # least room (d = 1)
        from fedcore.privacy.distributed import DistributedDP
        from fedcore.secure.round import SECAGG_DROPOUT_TOLERANCE

        assert config.dp.clip is not None
        dp = DistributedDP.for_round(
            config.dp.clip, config.noise_multiplier, config.per_round, SECAGG_DROPOUT_TOLERANCE
        )
        dp.headroom_bits(ring, 1)
    excluded = {
        "--dp (other than distributed:CLIP)": config.dp is not None and not distributed,
        "--attack": config.attack is not None,
        "--error-feedback": config.error_feedback,
        "--partial": config.partial is not None,
        "--powersgd": config.powersgd is not None,
        "--local-head": config.local_head,
        "--adaptive": config.adaptive_deadline_s is not None,
        f"--aggregator {config.aggregator}": not config.aggregator.streaming,
        f"--strategy {config.strategy}": config.strategy.name in ("scaffold", "fednova"),
    }
    flag = _first_set(excluded)
    if flag is not None:
        raise ValueError(f"--secagg reveals only the sum of the round's weighted updates; drop {flag}")


def _check_update_rules(config: FLConfig) -> None:
    """Shifted compression and a decaying residual need a lossy upload and a plain weighted mean."""
    if config.ef_decay is not None:
        if not config.error_feedback:
            raise ValueError("--ef-decay fades the error-feedback residual; it needs --error-feedback")
        if not 0.0 <= config.ef_decay <= 1.0:
            raise ValueError(f"--ef-decay must lie in [0, 1], got {config.ef_decay}")
    if config.shift is None:
        return
    lossless = (config.codec is None or config.codec.raw) and config.adaptive_deadline_s is None
    excluded = {
        "a lossy upload (--codec, --powersgd or --adaptive)": lossless and config.powersgd is None,
        "no --dp (the shift would change what the clip bounds)": config.dp is not None,
        "no --secagg (the ring's random-k is not the codec the shift saw)": config.secagg,
        f"a mean over deltas, not --strategy {config.strategy}": config.strategy.name
        in ("scaffold", "fednova"),
    }
    for need, broken in excluded.items():
        if broken:
            raise ValueError(f"--shift {config.shift} needs {need}")


def _check_async(config: FLConfig) -> None:
    """FedBuff needs 1 <= K <= C <= clients, and refuses what only makes sense for synchronous rounds."""
    if config.speed_spread is not None and not (config.speed_spread >= 1.0 and config.speed_spread < 1e6):
        raise ValueError(f"--speed-spread must lie in [1, 1e6), got {config.speed_spread}")
    if not config.asynchronous:
        given = [name for name in ("buffer", "concurrency") if getattr(config, name) is not None]
        if given:
            raise ValueError(f"--{given[0]} needs --async")
        return
    buffer, concurrency = config.async_buffer, config.async_concurrency
    if buffer < 1:
        raise ValueError(f"--buffer must be >= 1, got {buffer}")
    if not buffer <= concurrency <= config.clients:
        raise ValueError(
            f"--concurrency must lie in [buffer={buffer}, clients={config.clients}], got {concurrency} "
            "(the buffer fills only from clients that are training)"
        )
    excluded = {
        "--secagg": config.secagg,
        "--dp": config.dp is not None,
        "--attack": config.attack is not None,
        "--downlink-codec": config.downlink_codec is not None,
        "--partial": config.partial is not None,
        "--powersgd": config.powersgd is not None,
        "--adaptive": config.adaptive_deadline_s is not None,
        "--local-head": config.local_head,
        "--ditto-rounds": config.ditto_rounds,
        "--shift": config.shift is not None,
        "--server-memory": config.server_memory,
        "--server-shrink": config.server_shrink,
        "--dropout": config.dropout > 0.0,
        "--eval-clients": config.eval_clients,
        f"--aggregator {config.aggregator}": not config.aggregator.streaming,
        f"--strategy {config.strategy}": config.strategy.name in ("scaffold", "fednova"),
        f"--selection {config.selection}": config.selection != "random",
        "--stragglers without --speed-spread": config.stragglers > 0.0 and config.speed_spread is None,
    }
    flag = _first_set(excluded)
    if flag is not None:
        raise ValueError(
            f"--async (FedBuff) folds each update as it arrives, with no rounds to pick, mask, secure "
            f"or personalize over; drop {flag}"
        )


def _check_server_memory(config: FLConfig) -> None:
    """Server memory and shrink read each client's plain decoded update: the fold must be a plain mean."""
    if config.server_memory_age is not None:
        if not config.server_memory:
            raise ValueError("--server-memory-age bounds the server memory; it needs --server-memory")
        if config.server_memory_age < 1:
            raise ValueError(f"--server-memory-age must be >= 1, got {config.server_memory_age}")
    if config.server_memory and config.server_shrink:
        raise ValueError("--server-memory replaces the round's mean that --server-shrink scales; pick one")
    if not (config.server_memory or config.server_shrink):
        return
    rule = "--server-memory" if config.server_memory else "--server-shrink"
    excluded = {
        "--dp (the server would keep each client's update unnoised)": config.dp is not None,
        "--secagg (the server sees only the sum)": config.secagg,
        "--shift (the server never sees a client's shift)": config.shift is not None,
        "--partial or --local-head (updates cover different coordinates)": config.partial is not None
        or config.local_head,
        f"--aggregator {config.aggregator}": not config.aggregator.streaming,
        f"--strategy {config.strategy}": config.strategy.name in ("scaffold", "fednova"),
    }
    flag = _first_set(excluded)
    if flag is not None:
        raise ValueError(f"{rule} reads each client's plain update; drop {flag}")


def _check_attack(config: FLConfig) -> None:
    """An attack needs attackers, and rewrites whole updates, so it refuses uploads it cannot forge."""
    if not 0.0 <= config.byzantine < 1.0:
        raise ValueError(f"--byzantine must lie in [0, 1), got {config.byzantine}")
    if config.attack is None:
        if config.byzantine > 0.0:
            raise ValueError(
                "--byzantine needs --attack NAME (signflip, gauss, alie, ipm, minmax, labelflip ...)"
            )
        return
    if round(config.byzantine * config.clients) < 1:
        raise ValueError(f"--attack {config.attack} needs --byzantine F with F x clients >= 1")
    forged = {
        "--partial": config.partial is not None,
        "--powersgd": config.powersgd is not None,
        "--local-head": config.local_head,
        "--adaptive": config.adaptive_deadline_s is not None,
    }
    flag = _first_set(forged)
    if flag is not None:
        raise ValueError(f"--attack forges whole-model updates with the run's codec; drop {flag}")


def _check_adaptive(config: FLConfig) -> None:
    """Adaptive compression picks each client's uplink codec, so no other setting may fix it."""
    if config.adaptive_deadline_s is None:
        if config.adaptive_ladder is not None:
            raise ValueError("adaptive_ladder needs adaptive_deadline_s (--adaptive DEADLINE_S)")
        return
    if not config.adaptive_deadline_s > 0.0:
        raise ValueError(f"adaptive_deadline_s must be > 0, got {config.adaptive_deadline_s}")
    fixed = {
        "codec": config.codec is not None and not config.codec.raw,
        "powersgd": config.powersgd is not None,
    }
    name = _first_set(fixed)
    if name is not None:
        raise ValueError(f"adaptive compression picks each client's codec; drop {name} (--{name})")


_FIELD_TYPES: dict[str, str] = {f.name: str(f.type) for f in dataclasses.fields(FLConfig)}


def _parse_specs(config: FLConfig) -> None:
    """Spec text (from a flag, a file or a Python caller) becomes the typed spec, once, here."""
    kinds = _spec_kinds()
    for name in SPEC_FIELDS:
        value = getattr(config, name)
        parse, kind = kinds[name]
        if value is None or isinstance(value, kind):
            continue
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a spec or its text, got {value!r}")
        try:
            parsed = parse(value)
        except ValueError as exc:
            if name in _CODEC_FIELDS:
                raise ValueError(f"{flag_for(name)} {value}: {exc}") from None
            raise
        object.__setattr__(config, name, parsed)


def _check_types(config: FLConfig) -> None:
    for name, type_name in _FIELD_TYPES.items():
        if name in SPEC_FIELDS:
            continue
        value = getattr(config, name)
        optional = "None" in type_name
        if value is None and optional:
            continue
        base = type_name.split("|")[0].strip()
        expected: tuple[type, ...] = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}[
            base
        ]
        if not isinstance(value, expected) or (base != "bool" and isinstance(value, bool)):
            raise ValueError(f"{name} must be {type_name}, got {value!r}")


def load_config(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> FLConfig:
    """Defaults, then the TOML/YAML file's keys (field names; '-' or '_'), then every override not None."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update({k.replace("-", "_"): v for k, v in read_config_file(path).items()})
        check_keys(values, _FIELD_TYPES, str(path))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    check_keys(values, _FIELD_TYPES, "config")
    for name, value in values.items():
        if _FIELD_TYPES[name].startswith("float") and isinstance(value, int) and not isinstance(value, bool):
            values[name] = float(value)
    return FLConfig(**values)
