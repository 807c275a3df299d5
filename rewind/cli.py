"""The ``rewind`` command: ``serve``, ``publish``, ``query`` and ``tail``."""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NoReturn

from rewind import __version__
from rewind.errors import RewindError

ERROR_EXIT = 1
USAGE_EXIT = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_EXIT, f"{self.prog}: error: {message} (see --help)\n")


def _fail(message: str) -> int:
    print(f"rewind: error: {message}", file=sys.stderr)
    return ERROR_EXIT


# serve -------------------------------------------------------------------------------


def _add_serve(commands: argparse._SubParsersAction[_Parser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the event store server",
        description="Run the Rewind server. Flags override REWIND_* environment "
        "variables, which override the --config file, which overrides the defaults.",
    )
    serve.add_argument(
        "--query-bind-endpoint",
        action="append",
        metavar="ENDPOINT",
        help="where to serve requests (repeatable; default tcp://127.0.0.1:9090)",
    )
    serve.add_argument(
        "--streaming-bind-endpoint",
        action="append",
        metavar="ENDPOINT",
        help="where to broadcast events (repeatable; default tcp://127.0.0.1:9091)",
    )
    serve.add_argument(
        "--storage",
        metavar="URL",
        help="memory: or sqlite:PATH (default sqlite:rewind-data/events.db)",
    )
    serve.add_argument("--default-stream", metavar="NAME", help="stream for seed PUBLISH")
    serve.add_argument(
        "--log-level",
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL (default INFO)",
    )
    serve.add_argument("--config", metavar="FILE", type=Path, help="TOML configuration file")
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from rewind.server.app import run
    from rewind.server.config import env_name, load_config, logging_level

    config_file = args.config
    if config_file is None and env_name("config") in os.environ:
        config_file = Path(os.environ[env_name("config")])
    flags = {
        "query-bind-endpoint": args.query_bind_endpoint,
        "streaming-bind-endpoint": args.streaming_bind_endpoint,
        "storage": args.storage,
        "default-stream": args.default_stream,
        "log-level": args.log_level,
    }
    try:
        config = load_config(flags=flags, environ=os.environ, config_file=config_file)
    except RewindError as exc:
        return _fail(str(exc))
    logging.basicConfig(
        level=logging_level(config),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        run(config)
    except RewindError as exc:
        return _fail(str(exc))
    return 0


# Client tools -------------------------------------------------------------------------


def _add_endpoint_options(parser: argparse.ArgumentParser, *, streaming: bool) -> None:
    parser.add_argument(
        "--query-endpoint",
        metavar="ENDPOINT",
        default=os.environ.get("REWIND_QUERY_ENDPOINT", "tcp://127.0.0.1:9090"),
        help="server's query endpoint (default tcp://127.0.0.1:9090, or $REWIND_QUERY_ENDPOINT)",
    )
    if streaming:
        parser.add_argument(
            "--streaming-endpoint",
            metavar="ENDPOINT",
            default=os.environ.get("REWIND_STREAMING_ENDPOINT", "tcp://127.0.0.1:9091"),
            help="server's streaming endpoint (default tcp://127.0.0.1:9091, "
            "or $REWIND_STREAMING_ENDPOINT)",
        )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for each reply (default 10)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def _add_tools(commands: argparse._SubParsersAction[_Parser]) -> None:
    publish = commands.add_parser(
        "publish",
        help="publish events",
        description="Publish each DATA argument as one event; with none, each line of stdin.",
    )
    publish.add_argument("data", nargs="*", metavar="DATA")
    _add_endpoint_options(publish, streaming=False)
    publish.set_defaults(handler=_publish)

    query = commands.add_parser(
        "query",
        help="print stored events",
        description="Print stored events after --from (exclusive) up to --to (inclusive).",
    )
    query.add_argument("--from", dest="from_id", metavar="ID", help="start after this event id")
    query.add_argument("--to", dest="to_id", metavar="ID", help="stop at this event id")
    _add_endpoint_options(query, streaming=False)
    query.set_defaults(handler=_query)

    tail = commands.add_parser(
        "tail",
        help="print events as they are published",
        description="Follow the streaming socket and print each new event. With --after or "
        "--from-start, print the history first; no event is missed or repeated.",
    )
    start = tail.add_mutually_exclusive_group()
    start.add_argument("--after", metavar="ID", help="print history after this event id first")
    start.add_argument("--from-start", action="store_true", help="print all history first")
    tail.add_argument(
        "--idle-timeout",
        type=float,
        metavar="SECONDS",
        help="exit after this long without an event (default: follow forever)",
    )
    _add_endpoint_options(tail, streaming=True)
    tail.set_defaults(handler=_tail)


def _escape(data: bytes) -> str:
    """Render event data on one line: UTF-8 as is, backslash escapes for the rest.

    Backslashes themselves are doubled, so the rendering can be read back exactly.
    """
    text = data.replace(b"\\", b"\\\\").decode("utf-8", errors="backslashreplace")
    if "\n" in text or "\r" in text or "\t" in text:
        text = text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return text


def _format(event_id: str, data: bytes, as_json: bool) -> str:
    if not as_json:
        return f"{event_id}\t{_escape(data)}"
    record: dict[str, str] = {"id": event_id}
    try:
        record["data"] = data.decode("utf-8")
    except UnicodeDecodeError:
        record["data_base64"] = base64.b64encode(data).decode("ascii")
    return json.dumps(record, ensure_ascii=False)


def _input_events(args: argparse.Namespace) -> Iterable[bytes]:
    if args.data:
        return (item.encode("utf-8", errors="surrogateescape") for item in args.data)
    return (line.rstrip(b"\r\n") for line in sys.stdin.buffer)


def _publish(args: argparse.Namespace) -> int:
    from rewind.client import Client, ClientError

    count = 0
    with Client(args.query_endpoint, timeout=args.timeout) as client:
        try:
            for data in _input_events(args):
                client.publish(data)
                count += 1
        except ClientError as exc:
            return _fail(f"publish failed after {count} events: {exc}")
    if args.json:
        print(json.dumps({"published": count}))
    return 0


def _print_events(events: Iterable[tuple[str, bytes]], as_json: bool) -> None:
    out = sys.stdout
    for event_id, data in events:
        out.write(_format(event_id, data, as_json) + "\n")
        out.flush()


def _query(args: argparse.Namespace) -> int:
    from rewind.client import Client, ClientError

    with Client(args.query_endpoint, timeout=args.timeout) as client:
        try:
            _print_events(
                ((e.id, e.data) for e in client.query(args.from_id, args.to_id)), args.json
            )
        except ClientError as exc:
            return _fail(f"query failed: {exc}")
    return 0


def _tail(args: argparse.Namespace) -> int:
    from rewind.client import Client, ClientError

    with Client(args.query_endpoint, args.streaming_endpoint, timeout=args.timeout) as client:
        live_only = args.after is None and not args.from_start
        events = client.follow(args.after, live_only=live_only, idle_timeout=args.idle_timeout)
        try:
            _print_events(((e.id, e.data) for e in events), args.json)
        except ClientError as exc:
            return _fail(f"tail failed: {exc}")
        except KeyboardInterrupt:
            return 0
    return 0


# Entry point --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The full ``rewind`` argument parser."""
    parser = _Parser(prog="rewind", description="Rewind, an event store that speaks ZeroMQ.")
    parser.add_argument("--version", action="version", version=f"rewind {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_serve(commands)
    _add_tools(commands)
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
