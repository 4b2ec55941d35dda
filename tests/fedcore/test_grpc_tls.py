"""TLS on the gRPC transport: a client that trusts the server's self-signed certificate takes part in a
round; one that does not trust it, or speaks plaintext, never reaches the server."""

from __future__ import annotations

import datetime
import ipaddress
import threading
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_fakes import N, SumFold, expected_sum, good_reply, model_frame, token

from fedcore.protocol import Task
from fedcore.transport.grpc.auth import make_tokens
from fedcore.transport.grpc.client import FleetClient, RetryPolicy, ServerUnreachableError
from fedcore.transport.grpc.limits import Limits
from fedcore.transport.grpc.server import GrpcServerTransport, ServerTLS


def self_signed(common_name: str = "localhost") -> tuple[bytes, bytes]:
    """A certificate for localhost and 127.0.0.1 and its key, both PEM; valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(alt, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture
def tls_server(tmp_path: Path) -> tuple[GrpcServerTransport, bytes]:
    cert, key = self_signed()
    book = make_tokens(3, tmp_path)
    transport = GrpcServerTransport(
        "127.0.0.1:0", book, Limits.for_model(N), "{}", tls=ServerTLS(cert, key), poll_s=1.0
    )
    return transport, cert


def test_a_client_trusting_the_certificate_answers_a_round(
    tls_server: tuple[GrpcServerTransport, bytes], tmp_path: Path
) -> None:
    server, cert = tls_server
    client = FleetClient(
        f"127.0.0.1:{server.port}", 0, token(tmp_path, 0), lambda _: good_reply, tls_ca_pem=cert
    )
    thread = threading.Thread(target=client.run, daemon=True)
    thread.start()
    try:
        assert server.wait_ready(1, timeout_s=10.0) == 1
        result = server.run_round([Task(0, 0, 0, model_frame())], SumFold, deadline_s=10.0)
        assert result.failures == ()
        np.testing.assert_array_equal(result.aggregator.finish().delta_sum, expected_sum([0]))
    finally:
        server.close(grace_s=5.0)
    thread.join(timeout=5.0)
    assert not thread.is_alive()


@pytest.mark.parametrize("trust", ["other-ca", "plaintext"])
def test_a_client_without_the_servers_certificate_never_registers(
    tls_server: tuple[GrpcServerTransport, bytes], tmp_path: Path, trust: str
) -> None:
    server, _ = tls_server
    other, _ = self_signed("someone-else")
    client = FleetClient(
        f"127.0.0.1:{server.port}",
        0,
        token(tmp_path, 0),
        lambda _: good_reply,
        tls_ca_pem=other if trust == "other-ca" else None,
        retry=RetryPolicy(first_s=0.1, max_s=0.2, give_up_s=1.0, rpc_timeout_s=2.0),
    )
    try:
        with pytest.raises(ServerUnreachableError):
            client.run()
        assert server.wait_ready(1, timeout_s=0.1) == 0
    finally:
        server.close(grace_s=0.1)
