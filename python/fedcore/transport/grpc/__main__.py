"""`python -m fedcore.transport.grpc client|server|deploy-local`: the commands without fedcore's CLI.

deploy-local starts its clients this way; server and deploy-local here take the run configuration
from `--config run.toml` only (fedcore's own CLI adds every `fedcore sim` flag).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fedcore.transport.grpc import cli


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fedcore.transport.grpc")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_client_arguments(sub.add_parser("client", help="answer a server's tasks as one client"))
    server = sub.add_parser("server", help="serve a run to registered clients")
    deploy = sub.add_parser("deploy-local", help="a server and one process per client on loopback")
    for command in (server, deploy):
        command.add_argument("--config", type=Path, help="TOML file with FLConfig fields")
        command.add_argument("--out", help="output folder (FLConfig.out)")
    cli.add_server_arguments(server)
    cli.add_deploy_local_arguments(deploy)
    args = parser.parse_args(argv)
    if args.command == "client":
        return cli.run_client(args)
    if args.command == "deploy-local":
        return cli.run_deploy_local(args)
    from fedcore.config import load_config

    try:
        config = load_config(args.config, cli.fl_overrides(args))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return cli.run_server(args, config)


if __name__ == "__main__":
    sys.exit(main())
