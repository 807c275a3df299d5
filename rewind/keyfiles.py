"""CURVE key files: reading them with checks, and writing new key pairs.

The files are the ones :func:`zmq.auth.create_certificates` writes: ``NAME.key``
holds a public key, ``NAME.key_secret`` the same public key and its secret
key, both as 40-character Z85 text. Server and clients share these readers so
a bad file gets the same one-line explanation everywhere.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
KEY_TEXT_LENGTH = 40
"""Length of a CURVE key in Z85 text (32 bytes)."""


class KeyFileError(ValueError):
    """A key file or key directory cannot be used; the message names it and says why."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A CURVE public key and its secret key, both as Z85 text."""

    public: bytes
    secret: bytes

    def __repr__(self) -> str:
        # Never print the secret key, not even by accident in a traceback.
        return f"KeyPair(public={self.public.decode('ascii')!r})"


def check_key(key: bytes, what: str) -> bytes:
    """Return ``key`` if it is a well-formed Z85 CURVE key, else raise :class:`ValueError`."""
    if len(key) != KEY_TEXT_LENGTH:
        raise ValueError(f"{what} is {len(key)} characters long, not {KEY_TEXT_LENGTH}")
    try:
        z85.decode(key)
    except (ValueError, KeyError, UnicodeError):
        raise ValueError(f"{what} is not Z85 text") from None
    return key


def _load(path: Path) -> tuple[bytes, bytes | None]:
    if not path.exists():
        raise KeyFileError(f"{path} does not exist")
    if not path.is_file():
        raise KeyFileError(f"{path} is not a file")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except PermissionError:
        raise KeyFileError(f"{path} is not readable (permission denied)") from None
    except OSError as exc:
        raise KeyFileError(f"{path} is not readable: {exc.strerror or exc}") from None
    except ValueError:
        raise KeyFileError(f"{path} holds no public-key line: not a CURVE key file") from None
    try:
        check_key(public, "its public key")
        if secret is not None:
            check_key(secret, "its secret key")
    except ValueError as exc:
        raise KeyFileError(f"{path}: {exc}") from None
    return public, secret


def read_public_key(path: Path) -> bytes:
    """The public key in a key file (public or secret), as Z85 text."""
    return _load(path)[0]


def read_key_pair(path: Path) -> KeyPair:
    """The key pair in a secret key file, checked to belong together."""
    public, secret = _load(path)
    if secret is None:
        raise KeyFileError(
            f"{path} holds no secret key: give the {SECRET_SUFFIX} file, not the public one"
        )
    if zmq.curve_public(secret) != public:
        raise KeyFileError(f"{path}: its public key does not belong to its secret key")
    return KeyPair(public, secret)


def read_public_keys(directory: Path) -> dict[bytes, Path]:
    """Every public key in the ``*.key`` files of ``directory``, with the file it came from."""
    if not directory.exists():
        raise KeyFileError(f"{directory} does not exist")
    if not directory.is_dir():
        raise KeyFileError(f"{directory} is not a directory")
    try:
        files = sorted(directory.glob("*" + PUBLIC_SUFFIX))
    except OSError as exc:
        raise KeyFileError(f"{directory} is not readable: {exc.strerror or exc}") from None
    if not os.access(directory, os.R_OK | os.X_OK):
        raise KeyFileError(f"{directory} is not readable (permission denied)")
    keys: dict[bytes, Path] = {}
    for path in files:
        key = read_public_key(path)
        if key in keys:
            raise KeyFileError(f"{path} repeats the key of {keys[key].name}")
        keys[key] = path
    return keys


def write_key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` (mode 0600) into ``directory``.

    Refuses, with :class:`KeyFileError`, to replace either file. The pair is
    made in a private temporary directory and hard-linked into place, so the
    secret key is never readable by others and an existing file is never
    touched, even by a concurrent writer.
    """
    if not name or name.startswith(".") or "/" in name or "\x00" in name:
        raise KeyFileError(f"{name!r} is not a usable key name")
    public_path = directory / (name + PUBLIC_SUFFIX)
    secret_path = directory / (name + SECRET_SUFFIX)
    for path in (public_path, secret_path):
        if path.exists():
            raise KeyFileError(f"{path} exists already; not replacing it")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory, prefix=".keygen-") as scratch:
            made_public, made_secret = (
                Path(made) for made in zmq.auth.create_certificates(scratch, name)
            )
            os.chmod(made_secret, 0o600)
            os.chmod(made_public, 0o644)
            os.link(made_secret, secret_path)
            try:
                os.link(made_public, public_path)
            except BaseException:
                secret_path.unlink()
                raise
    except FileExistsError as exc:
        raise KeyFileError(f"{exc.filename2 or exc.filename} exists already") from None
    except OSError as exc:
        raise KeyFileError(f"{directory}: {exc.strerror or exc}") from None
    return public_path, secret_path
