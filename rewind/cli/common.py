"""What every ``rewind`` subcommand shares: the parser class, failure exits, endpoint
options and input."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, NoReturn, TypeAlias

if TYPE_CHECKING:
    from rewind.client import Client, CurveKeys

ERROR_EXIT = 1
USAGE_EXIT = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_EXIT, f"{self.prog}: error: {message} (see --help)\n")


# A string: argparse's class cannot be subscripted at run time.
Commands: TypeAlias = "argparse._SubParsersAction[Parser]"
"""The subcommand registry each module adds its commands to."""


def fail(message: str) -> int:
    """Print one ``rewind: error:`` line on stderr; return the failure exit status."""
    print(f"rewind: error: {message}", file=sys.stderr)
    return ERROR_EXIT


def endpoint_list(text: str) -> str:
    """argparse type: one endpoint, or several separated by commas, none of them empty."""
    if any(not part.strip() for part in text.split(",")):
        raise argparse.ArgumentTypeError(f"empty endpoint in {text!r}")
    return text


class _Endpoints(argparse.Action):
    """A repeatable endpoint option: the values given replace the default and add up."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        given = getattr(namespace, self.dest)
        endpoints = given if isinstance(given, list) else []
        setattr(namespace, self.dest, [*endpoints, values])


def add_endpoint_options(parser: argparse.ArgumentParser, *, streaming: bool) -> None:
    """Add the server endpoint, ``--timeout`` and ``--json`` options a client command takes.

    Each endpoint option may name several servers on one store (repeat it, or
    separate endpoints with commas); the client fails over from one to the
    next. Feed endpoints follow the query endpoints' order.
    """
    several = "; repeat it or separate with commas for several servers on one store"
    parser.add_argument(
        "--query-endpoint",
        metavar="ENDPOINT",
        type=endpoint_list,
        action=_Endpoints,
        default=os.environ.get("REWIND_QUERY_ENDPOINT", "tcp://127.0.0.1:9090"),
        help="server's query endpoint (default tcp://127.0.0.1:9090, or $REWIND_QUERY_ENDPOINT)"
        + several,
    )
    if streaming:
        parser.add_argument(
            "--streaming-endpoint",
            metavar="ENDPOINT",
            type=endpoint_list,
            action=_Endpoints,
            default=os.environ.get("REWIND_STREAMING_ENDPOINT", "tcp://127.0.0.1:9091"),
            help="server's streaming endpoint (default tcp://127.0.0.1:9091, "
            "or $REWIND_STREAMING_ENDPOINT); one per query endpoint, in the same order",
        )
        parser.add_argument(
            "--v2-streaming-endpoint",
            metavar="ENDPOINT",
            type=endpoint_list,
            action=_Endpoints,
            default=os.environ.get("REWIND_V2_STREAMING_ENDPOINT", "tcp://127.0.0.1:9092"),
            help="server's v2 feed, for --stream and --from-position (default "
            "tcp://127.0.0.1:9092, or $REWIND_V2_STREAMING_ENDPOINT); one per query "
            "endpoint, in the same order",
        )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for each reply (default 10)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--curve-server-key",
        metavar="FILE",
        default=os.environ.get("REWIND_CURVE_SERVER_KEY"),
        help="connect with CURVE: the server's public key file (or $REWIND_CURVE_SERVER_KEY); "
        "needs --curve-key",
    )
    parser.add_argument(
        "--curve-key",
        metavar="FILE",
        default=os.environ.get("REWIND_CURVE_KEY"),
        help="this client's secret key file, from `rewind keygen` (or $REWIND_CURVE_KEY)",
    )


def client_curve(args: argparse.Namespace) -> CurveKeys | None:
    """The CURVE keys the ``--curve-*`` options name, or ``None`` for a plain connection.

    A missing partner option or an unusable key file ends the command with a
    one-line error (exit status 2 and 1).
    """
    from rewind.client import CurveKeys
    from rewind.keyfiles import KeyFileError

    server_key, own_key = args.curve_server_key, args.curve_key
    if server_key is None and own_key is None:
        return None
    if server_key is None or own_key is None:
        given, missing = (
            ("--curve-key", "--curve-server-key")
            if server_key is None
            else ("--curve-server-key", "--curve-key")
        )
        print(f"rewind: error: {given} needs {missing} too", file=sys.stderr)
        raise SystemExit(USAGE_EXIT)
    try:
        return CurveKeys.from_files(server_key, own_key)
    except KeyFileError as exc:
        raise SystemExit(fail(f"CURVE key: {exc}")) from None


def make_client(args: argparse.Namespace) -> Client:
    """A client for the endpoint options in ``args``; a bad combination ends the command.

    With several query endpoints every server is tried before a request fails.
    """
    from rewind.client import Client
    from rewind.client.endpoints import parse_endpoints
    from rewind.client.sync import DEFAULT_STREAMING_ENDPOINT, DEFAULT_V2_STREAMING_ENDPOINT

    curve = client_curve(args)
    try:
        count = len(parse_endpoints(args.query_endpoint))
        return Client(
            args.query_endpoint,
            getattr(args, "streaming_endpoint", DEFAULT_STREAMING_ENDPOINT),
            v2_streaming_endpoint=getattr(
                args, "v2_streaming_endpoint", DEFAULT_V2_STREAMING_ENDPOINT
            ),
            timeout=args.timeout,
            retries=max(2, count),
            curve=curve,
        )
    except ValueError as exc:
        print(f"rewind: error: {exc}", file=sys.stderr)
        raise SystemExit(USAGE_EXIT) from None


def input_events(args: argparse.Namespace) -> Iterable[bytes]:
    """The DATA arguments as bytes, or else each line of stdin without its line ending."""
    if args.data:
        return (item.encode("utf-8", errors="surrogateescape") for item in args.data)
    return (line.rstrip(b"\r\n") for line in sys.stdin.buffer)


def non_negative(text: str) -> int:
    """argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value
