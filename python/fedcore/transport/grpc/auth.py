"""Client tokens: the server keeps only sha256 hashes per client id; each client keeps its own secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fedcore.config_files import tomllib  # tomllib on 3.11+, tomli on 3.10

TOKEN_BYTES = 32
HASHES_FILE = "tokens.json"


def hash_token(token: str) -> str:
    """The hex sha256 the server stores, so a leaked token file does not leak tokens."""
    return hashlib.sha256(token.encode()).hexdigest()


def client_token_file(directory: Path, client_id: int) -> Path:
    return directory / f"client-{client_id}.token"


@dataclass(frozen=True)
class TokenBook:
    """Client id -> sha256(token) hex; `refusal` says why a presented token is not that client's."""

    hashes: Mapping[int, str]

    def __post_init__(self) -> None:
        for client_id, digest in self.hashes.items():
            if client_id < 0 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"client {client_id}: a token hash must be 64 lowercase hex digits")

    @classmethod
    def load(cls, path: Path) -> TokenBook:
        """A JSON or TOML table of client id -> hash, either at the top or under `clients`."""
        text = path.read_text()
        table = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        clients = table.get("clients", table) if isinstance(table, dict) else None
        if not isinstance(clients, dict):
            raise ValueError(f"{path}: expected a table of client id -> sha256 hex")
        return cls({int(k): str(v).lower() for k, v in clients.items()})

    def save(self, path: Path) -> None:
        body = {"clients": {str(k): v for k, v in sorted(self.hashes.items())}}
        path.write_text(json.dumps(body, indent=1) + "\n")

    def refusal(self, client_id: int, token: str) -> str | None:
        """None when `token` is client `client_id`'s; otherwise why not (unknown, or another client's)."""
        digest = hash_token(token)
        expected = self.hashes.get(client_id)
        if expected is not None and hmac.compare_digest(expected, digest):
            return None
        if any(hmac.compare_digest(other, digest) for other in self.hashes.values()):
            return f"the token presented for client {client_id} belongs to another client"
        return f"unknown token for client {client_id}"


def make_tokens(clients: int, directory: Path) -> TokenBook:
    """Fresh random tokens for clients 0..clients-1: `client-I.token` files (0600) and the server's hashes."""
    if clients < 1:
        raise ValueError(f"clients must be >= 1, got {clients}")
    directory.mkdir(parents=True, exist_ok=True)
    hashes: dict[int, str] = {}
    for client_id in range(clients):
        token = secrets.token_urlsafe(TOKEN_BYTES)
        path = client_token_file(directory, client_id)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        hashes[client_id] = hash_token(token)
    book = TokenBook(hashes)
    book.save(directory / HASHES_FILE)
    return book


def read_token(path: Path) -> str:
    token = path.read_text().strip()
    if not token:
        raise ValueError(f"{path} holds no token")
    return token
