"""A client process for the gRPC tests: answers each task with its fixed update after DELAY_S seconds.

python grpc_peer.py TARGET CLIENT_ID TOKEN_FILE DELAY_S
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from grpc_fakes import good_reply

from fedcore.protocol import Failure, Reply, Task
from fedcore.transport.grpc.auth import read_token
from fedcore.transport.grpc.client import FleetClient, RetryPolicy


def main() -> int:
    target, client_id, token_file, delay_s = (
        sys.argv[1],
        int(sys.argv[2]),
        Path(sys.argv[3]),
        float(sys.argv[4]),
    )

    def handle(task: Task) -> Reply | Failure:
        print(f"task {task.round}", flush=True)
        time.sleep(delay_s)
        return good_reply(task)

    retry = RetryPolicy(first_s=0.1, max_s=0.5, give_up_s=20.0)
    FleetClient(target, client_id, read_token(token_file), lambda _: handle, retry=retry).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
