"""``rewind keygen``: write a CURVE key pair for a server or a client."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rewind.cli.common import Commands, fail


def add_keygen(commands: Commands) -> None:
    """Register ``keygen``."""
    keygen = commands.add_parser(
        "keygen",
        help="write a CURVE key pair",
        description="Write a new CURVE key pair into DIR (created if missing): NAME.key, the "
        "public key to hand out, and NAME.key_secret (mode 0600), to keep private. Existing "
        "files are never replaced.",
    )
    keygen.add_argument("directory", metavar="DIR", type=Path)
    keygen.add_argument(
        "--name", default="rewind", metavar="NAME", help="file name stem (default rewind)"
    )
    keygen.add_argument("--json", action="store_true", help="print the result as JSON")
    keygen.set_defaults(handler=run_keygen)


def run_keygen(args: argparse.Namespace) -> int:
    """Write the key pair; print where it went and the public key."""
    from rewind.keyfiles import KeyFileError, read_public_key, write_key_pair

    try:
        public_path, secret_path = write_key_pair(args.directory, args.name)
        public_key = read_public_key(public_path).decode("ascii")
    except KeyFileError as exc:
        return fail(f"keygen: {exc}")
    if args.json:
        record = {
            "public_key_file": str(public_path),
            "secret_key_file": str(secret_path),
            "public_key": public_key,
        }
        print(json.dumps(record))
    else:
        print(f"public key:  {public_path} ({public_key})")
        print(f"secret key:  {secret_path} (keep it private)")
    return 0
