"""A client's CURVE credentials, applied to every socket the clients open."""

from __future__ import annotations

import os
from typing import Any

import zmq

from rewind.keyfiles import check_key, read_key_pair, read_public_key


class CurveKeys:
    """The server's public key and the client's own key pair, for CURVE connections.

    Build it from key files written by ``rewind keygen`` (or
    :func:`zmq.auth.create_certificates`)::

        keys = CurveKeys.from_files("keys/server.key", "keys/alice.key_secret")
        with Client("tcp://db.example:9090", curve=keys) as client:
            ...

    or from Z85 key text with the constructor. Every key is checked at once;
    a bad one raises :class:`ValueError` (a :class:`~rewind.keyfiles.KeyFileError`
    for a file), before anything is sent. A client with keys the server does
    not accept gets no reply at all, so its requests end in
    :class:`~rewind.client.RequestTimeout`. For sockets you create yourself
    (the ``rewind-client`` style functions), call :meth:`apply` before
    connecting.
    """

    __slots__ = ("_secret_key", "public_key", "server_key")

    def __init__(self, server_key: bytes, public_key: bytes, secret_key: bytes) -> None:
        self.server_key = check_key(server_key, "the server key")
        self.public_key = check_key(public_key, "the public key")
        self._secret_key = check_key(secret_key, "the secret key")
        if zmq.curve_public(secret_key) != public_key:
            raise ValueError("the public key does not belong to the secret key")

    @classmethod
    def from_files(
        cls, server_key_file: str | os.PathLike[str], secret_key_file: str | os.PathLike[str]
    ) -> CurveKeys:
        """Keys from the server's public key file and the client's secret key file."""
        from pathlib import Path

        server_key = read_public_key(Path(server_key_file))
        pair = read_key_pair(Path(secret_key_file))
        return cls(server_key, pair.public, pair.secret)

    def apply(self, sock: zmq.Socket[Any]) -> None:
        """Make ``sock`` a CURVE client of the server; call before ``connect``."""
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_key)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public_key)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self._secret_key)

    def __repr__(self) -> str:
        # The secret key stays out of logs and tracebacks.
        return (
            f"CurveKeys(server_key={self.server_key.decode('ascii')!r}, "
            f"public_key={self.public_key.decode('ascii')!r})"
        )


def prepare(sock: zmq.Socket[Any], curve: CurveKeys | None) -> None:
    """Set what every client socket needs before it connects: no linger, CURVE if used."""
    sock.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        curve.apply(sock)
