"""The ``rewind`` command: ``serve``; ``publish``, ``query`` and ``tail`` (seed protocol);
``append``, ``read``, ``read-all``, ``streams``, ``info`` and ``tail --stream`` (Rewind v2);
``verify`` and ``backup`` (store files); ``keygen`` (CURVE keys)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rewind import __version__
from rewind.cli.admin import add_admin_tools
from rewind.cli.common import Parser
from rewind.cli.keygen import add_keygen
from rewind.cli.output import escape as _escape  # noqa: F401 - the unit tests' name
from rewind.cli.output import format_seed_event as _format  # noqa: F401 - the same
from rewind.cli.seed import add_seed_tools
from rewind.cli.serve import add_serve
from rewind.cli.v2 import add_v2_tools

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The full ``rewind`` argument parser."""
    parser = Parser(prog="rewind", description="Rewind, an event store that speaks ZeroMQ.")
    parser.add_argument("--version", action="version", version=f"rewind {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_serve(commands)
    add_seed_tools(commands)
    add_v2_tools(commands)
    add_admin_tools(commands)
    add_keygen(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``rewind`` command and return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except BrokenPipeError:
        # The reader of our output went away (``rewind query | head``): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return status
