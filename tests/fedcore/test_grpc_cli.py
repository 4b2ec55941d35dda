"""The commands end to end on loopback: `deploy-local` reproduces `fedcore sim` round for round, and
`server` + `client` processes over TLS write the run's records; a client with a wrong token is turned away."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_grpc_tls import self_signed

from fedcore.config import FLConfig, load_config
from fedcore.transport.grpc import cli
from fedcore.transport.grpc.auth import TokenBook, client_token_file, hash_token, read_token

ROOT = Path(__file__).parents[2]
RUN_TOML = """\
dataset = "digits"
clients = 3
per_round = 2
rounds = 2
local_epochs = 1
codec = "quant:8"
workers = 0
vectorize = false  # a client process trains one client, so the simulation does too
seed = 3
"""
TIMEOUT_S = 400  # four processes importing torch on a busy two-core machine


def _grpc(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedcore.transport.grpc", *args]


def _env() -> dict[str, str]:
    paths = [str(ROOT / "python"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _make_tokens(cwd: Path) -> None:
    done = subprocess.run(_grpc("server", "--make-tokens", "3", "--token-dir", "tokens"), cwd=cwd, env=_env())
    assert done.returncode == 0


def _server(address: str, *extra: str) -> list[str]:
    """`server` on run.toml into srv/, with the tokens _make_tokens wrote."""
    flags = ("--config", "run.toml", "--out", "srv", "--token-file", "tokens/tokens.json", "--poll-s", "1")
    return _grpc("server", "--address", address, *flags, *extra)


def _client(target: str, client_id: int, *extra: str, token_of: int | None = None) -> list[str]:
    """`client` as `client_id`, presenting the token of `token_of` (default: its own)."""
    token = f"tokens/client-{client_id if token_of is None else token_of}.token"
    return _grpc("client", "--server", target, "--token-file", token, "--client-id", str(client_id), *extra)


def _spawn(cwd: Path, command: list[str], stdout: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, cwd=cwd, env=_env(), stdout=stdout, stderr=subprocess.DEVNULL)


def _kill(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.slow
def test_deploy_local_reproduces_the_simulation_round_for_round(tmp_path: Path) -> None:
    from fedcore.sim import simulate_to_dir

    (tmp_path / "run.toml").write_text(RUN_TOML)
    out = tmp_path / "grpc"
    command = _grpc("deploy-local", "--config", "run.toml", "--out", str(out), "--poll-s", "1")
    done = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    for name in ("rounds.jsonl", "summary.json", "audit.jsonl", "tokens/tokens.json", "clients/client-2.log"):
        assert (out / name).is_file(), name

    config = load_config(tmp_path / "run.toml", {"out": str(tmp_path / "sim")})
    simulate_to_dir(config, lambda record: None)
    keys = ("round", "clients", "accuracy", "loss", "uplink_bytes", "downlink_bytes")
    over_grpc = [{k: r[k] for k in keys} for r in _records(out / "rounds.jsonl")]
    simulated = [{k: r[k] for k in keys} for r in _records(tmp_path / "sim" / "rounds.jsonl")]
    assert over_grpc == simulated
    audit = _records(out / "audit.jsonl")
    assert [a["answered"] for a in audit] == [r["clients"] for r in over_grpc]


@pytest.mark.slow
def test_server_and_client_processes_over_tls_write_the_runs_records(tmp_path: Path) -> None:
    cert, key = self_signed()
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    (tmp_path / "run.toml").write_text(RUN_TOML.replace("rounds = 2", "rounds = 1"))
    _make_tokens(tmp_path)
    tls = ("--tls-cert", "cert.pem", "--tls-key", "key.pem")
    server = _spawn(tmp_path, _server("127.0.0.1:0", *tls, "--wait-clients-s", "300"), stdout=subprocess.PIPE)
    clients: list[subprocess.Popen[bytes]] = []
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[-1])  # "fedcore server listening on port P"
        target = f"127.0.0.1:{port}"
        stranger = _client(target, 0, "--tls-ca", "cert.pem", token_of=1)
        done = subprocess.run(stranger, cwd=tmp_path, env=_env(), capture_output=True, timeout=TIMEOUT_S)
        assert done.returncode == 2  # client 1's token presented as client 0: refused, no retry
        assert b"belongs to another client" in done.stderr
        trusting = ("--tls-ca", "cert.pem", "--dataset", "digits")
        clients = [_spawn(tmp_path, _client(target, c, *trusting)) for c in range(3)]
        assert server.wait(timeout=TIMEOUT_S) == 0
        assert [c.wait(timeout=60) for c in clients] == [0, 0, 0]
    finally:
        _kill(server, *clients)
    summary = json.loads((tmp_path / "srv" / "summary.json").read_text())
    assert summary["rounds"] == 1
    assert len(_records(tmp_path / "srv" / "rounds.jsonl")) == 1
    assert _records(tmp_path / "srv" / "audit.jsonl")[0]["dropped"] == []
    refusals = _records(tmp_path / "srv" / "refusals.jsonl")
    assert [(r["client_id"], r["kind"]) for r in refusals] == [(0, "refused")]


def test_make_tokens_gives_each_client_a_secret_and_the_server_only_hashes(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.add_server_arguments(parser)
    args = parser.parse_args(["--make-tokens", "4", "--token-dir", str(tmp_path)])
    assert cli.run_server(args, FLConfig()) == 0
    book = TokenBook.load(tmp_path / "tokens.json")
    secrets = [read_token(client_token_file(tmp_path, c)) for c in range(4)]
    assert len(set(secrets)) == 4
    assert all(book.refusal(c, s) is None for c, s in enumerate(secrets))
    assert not any(s in (tmp_path / "tokens.json").read_text() for s in secrets)
    assert oct(client_token_file(tmp_path, 0).stat().st_mode & 0o777) == "0o600"
    toml = tmp_path / "tokens.toml"
    toml.write_text(f'[clients]\n7 = "{hash_token("seven")}"\n')
    assert TokenBook.load(toml).refusal(7, "seven") is None


def test_server_flags_are_not_mistaken_for_run_configuration() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int)
    cli.add_server_arguments(parser)
    args = parser.parse_args(["--rounds", "3", "--address", "127.0.0.1:0", "--round-timeout", "9"])
    assert cli.fl_overrides(args) == {"rounds": 3}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_rounds(path: Path, rounds: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if path.is_file() and len(path.read_text().splitlines()) >= rounds:
            return
        assert proc.poll() is None, "the server exited early"
        time.sleep(0.2)
    raise AssertionError(f"{path} did not reach {rounds} rounds in {timeout_s} s")


@pytest.mark.slow
def test_clients_ride_out_a_server_killed_mid_run_and_resumed_on_the_same_port(tmp_path: Path) -> None:
    from fedcore.sim import simulate_to_dir

    # Long enough that the server is still mid-run when it is killed after round 2, even on an idle machine.
    (tmp_path / "run.toml").write_text(RUN_TOML.replace("rounds = 2", "rounds = 12"))
    _make_tokens(tmp_path)
    address = f"127.0.0.1:{_free_port()}"
    server = _spawn(tmp_path, _server(address))
    clients = [_spawn(tmp_path, _client(address, c)) for c in range(3)]
    try:
        _wait_for_rounds(tmp_path / "srv" / "rounds.jsonl", 2, server, TIMEOUT_S)
        server.kill()  # mid-run, without a word to the clients
        server.wait(timeout=10)
        server = _spawn(tmp_path, _server(address, "--resume"))
        assert server.wait(timeout=TIMEOUT_S) == 0
        assert [c.wait(timeout=60) for c in clients] == [0, 0, 0]
    finally:
        _kill(server, *clients)
    config = load_config(tmp_path / "run.toml", {"out": str(tmp_path / "sim")})
    simulate_to_dir(config, lambda record: None)
    keys = ("round", "clients", "accuracy", "uplink_bytes")
    resumed = [{k: r[k] for k in keys} for r in _records(tmp_path / "srv" / "rounds.jsonl")]
    assert resumed == [{k: r[k] for k in keys} for r in _records(tmp_path / "sim" / "rounds.jsonl")]


def test_a_client_asked_for_another_dataset_than_the_servers_says_so() -> None:
    make = cli.client_handler_factory(0, data=None, dataset="mnist1d")
    with pytest.raises(cli.ClientSetupError, match="differs from the server's dataset digits"):
        make(FLConfig(dataset="digits").to_dict())
    with pytest.raises(cli.ClientSetupError, match="unexpected keyword"):
        make({**FLConfig().to_dict(), "a_field_from_a_newer_server": 1})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--adaptive", "0.22"], "--adaptive plans with simulated bandwidth"),
        (["--attack", "signflip", "--byzantine", "0.2"], "--attack simulates Byzantine clients"),
    ],
)
def test_a_deployment_refuses_what_only_the_simulation_does(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fedcore.cli import main

    assert main(["deploy-local", "--clients", "3", "--per-round", "2", "--out", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "tokens").exists()


MY_MODELS = """\
import torch


def tiny():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
"""


@pytest.mark.slow
def test_deployed_clients_train_your_own_model_by_import_path(tmp_path: Path) -> None:
    """deploy-local starts each client as `fedcore client ... --model my_models:tiny`."""
    from fedcore.sim import simulate_to_dir

    (tmp_path / "my_models.py").write_text(MY_MODELS)
    (tmp_path / "run.toml").write_text(RUN_TOML + 'model = "my_models:tiny"\n')
    _make_tokens(tmp_path)
    wrong = _client("127.0.0.1:9", 0, "--model", "my_models:nothing")  # refused before it connects
    done = subprocess.run(wrong, cwd=tmp_path, env=_env(), capture_output=True, timeout=TIMEOUT_S)
    assert done.returncode == 2
    assert b"--model my_models:nothing: module 'my_models' has no 'nothing'" in done.stderr
    out = tmp_path / "grpc"
    command = _grpc("deploy-local", "--config", "run.toml", "--out", str(out), "--poll-s", "1")
    done = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    sys.path.insert(0, str(tmp_path))
    try:
        simulate_to_dir(load_config(tmp_path / "run.toml", {"out": str(tmp_path / "sim")}), lambda r: None)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("my_models", None)
    keys = ("round", "clients", "accuracy", "loss")
    over_grpc = [{k: r[k] for k in keys} for r in _records(out / "rounds.jsonl")]
    assert over_grpc == [{k: r[k] for k in keys} for r in _records(tmp_path / "sim" / "rounds.jsonl")]


def test_a_client_with_another_model_than_the_servers_says_so() -> None:
    make = cli.client_handler_factory(0, data=None, dataset=None, model="my_pkg:net")
    with pytest.raises(cli.ClientSetupError, match="--model my_pkg:net differs from the server's model mlp"):
        make(FLConfig().to_dict())
