"""A client process for the secure-aggregation gRPC tests: trains nothing, holds a fixed update, and runs
the real SecAgg+ client half. Optionally it kills itself when a stage arrives, or forges its answer.

python grpc_secure_peer.py TARGET CLIENT_ID TOKEN_FILE [die:STAGE | forge:STAGE]
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import numpy as np

import fedcodec as fc
from fedcore.protocol import Failure, Reply, Task
from fedcore.secure.party import SecureParty
from fedcore.transport.grpc.auth import read_token
from fedcore.transport.grpc.client import FleetClient, Handlers, RetryPolicy

N = 1000


def update(client_id: int) -> np.ndarray:
    """Client `client_id`'s update (the test computes the expected sum from the same function)."""
    return (0.1 * np.random.default_rng(client_id).standard_normal(N)).astype(np.float32)


def examples(client_id: int) -> int:
    return 10 + client_id


def handlers(client_id: int, mode: str = "", at_stage: str = "") -> Handlers:
    """A fixed update held by the client's SecureParty, and its stage answers; die or forge at one stage."""
    party = SecureParty(client_id)

    def train(task: Task) -> Reply | Failure:
        frame = fc.from_spec("none").encode(update(client_id))
        return party.hold(Reply(task.round, client_id, (frame,), examples(client_id), 3, 0.25))

    def stage(round_num: int, name: str, payload: bytes) -> bytes:
        if mode == "die" and name == at_stage:
            print(f"dying at {name}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        answer = party.answer_bytes(round_num, name, payload)
        return answer[:-1] if mode == "forge" and name == at_stage else answer

    return Handlers(train, stage)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    target, client_id, token_file = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    mode, _, at_stage = (sys.argv[4] if len(sys.argv) > 4 else "").partition(":")
    made = handlers(client_id, mode, at_stage)
    retry = RetryPolicy(first_s=0.1, max_s=0.5, give_up_s=30.0)
    FleetClient(target, client_id, read_token(token_file), lambda _: made, retry=retry).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
