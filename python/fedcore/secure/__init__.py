"""Secure aggregation (SecAgg+): the server learns the sum of the round's updates and nothing about any one.

Client and server halves are state machines over plain message dataclasses (`messages`), so
any transport carries them; `sim.run_secagg_round` runs a whole round in process. Encoding into
the ring (`encoding`), the parameter helper (`params`) and the modular sum (`aggregator`) sit
beside them. Cryptography is in Rust (`fedcodec.secagg`).
"""

from fedcore.secure.aggregator import ModularSum
from fedcore.secure.client import ClientAdvertise, ClientMask, ClientShare, ClientUnmask, start_client
from fedcore.secure.encoding import (
    RingConfig,
    RingElements,
    Unrounded,
    decode_mean,
    decode_sum,
    encode_update,
    encoded_length,
    ring_codes,
    unrounded_update,
)
from fedcore.secure.graph import all_neighbours, neighbours
from fedcore.secure.messages import (
    AdvertiseKeys,
    EncryptedShare,
    Flag,
    MaskedInput,
    NeighbourKeys,
    RevealedShare,
    RoundSetup,
    SecAggAbort,
    SecAggResult,
    ShareDelivery,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from fedcore.secure.params import SecAggParams, choose_params
from fedcore.secure.server import ServerAdvertise, ServerCollect, ServerShare, ServerUnmask, start_server
from fedcore.secure.sim import STAGES, RoundReport, make_setup, run_secagg_round, secure_sum

__all__ = [
    "STAGES",
    "AdvertiseKeys",
    "ClientAdvertise",
    "ClientMask",
    "ClientShare",
    "ClientUnmask",
    "EncryptedShare",
    "Flag",
    "MaskedInput",
    "ModularSum",
    "NeighbourKeys",
    "RevealedShare",
    "RingConfig",
    "RingElements",
    "RoundReport",
    "RoundSetup",
    "SecAggAbort",
    "SecAggParams",
    "SecAggResult",
    "ServerAdvertise",
    "ServerCollect",
    "ServerShare",
    "ServerUnmask",
    "ShareDelivery",
    "ShareKeys",
    "UnmaskRequest",
    "UnmaskResponse",
    "Unrounded",
    "all_neighbours",
    "choose_params",
    "decode_mean",
    "decode_sum",
    "encode_update",
    "encoded_length",
    "make_setup",
    "neighbours",
    "ring_codes",
    "run_secagg_round",
    "secure_sum",
    "start_client",
    "start_server",
    "unrounded_update",
]
