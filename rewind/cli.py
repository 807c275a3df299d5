"""The ``rewind`` command: ``serve``; ``publish``, ``query`` and ``tail`` (seed protocol);
``append``, ``read``, ``read-all``, ``streams``, ``info`` and ``tail --stream`` (Rewind v2)."""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from rewind import __version__
from rewind.errors import RewindError

if TYPE_CHECKING:
    from rewind.model import RecordedEvent

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
    serve.add_argument(
        "--v2-streaming-bind-endpoint",
        action="append",
        metavar="ENDPOINT",
        help="where to broadcast the v2 feed (repeatable; default tcp://127.0.0.1:9092)",
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
        "v2-streaming-bind-endpoint": args.v2_streaming_bind_endpoint,
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
            "--v2-streaming-endpoint",
            metavar="ENDPOINT",
            default=os.environ.get("REWIND_V2_STREAMING_ENDPOINT", "tcp://127.0.0.1:9092"),
            help="server's v2 feed, for --stream and --from-position (default "
            "tcp://127.0.0.1:9092, or $REWIND_V2_STREAMING_ENDPOINT)",
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
        "--from-start, print the history first; no event is missed or repeated. With "
        "--stream or --from-position, follow the v2 feed instead: the history from the "
        "position, then live events, printed like `rewind read-all`.",
    )
    start = tail.add_mutually_exclusive_group()
    start.add_argument("--after", metavar="ID", help="print history after this event id first")
    start.add_argument("--from-start", action="store_true", help="print all history first")
    start.add_argument(
        "--from-position",
        type=_non_negative,
        metavar="N",
        help="v2: print every event from global position N on (default with --stream: 1)",
    )
    tail.add_argument(
        "--stream",
        "--stream-prefix",
        dest="stream_prefix",
        metavar="PREFIX",
        help="v2: only streams whose names start with PREFIX",
    )
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

    if args.stream_prefix is not None or args.from_position is not None:
        return _tail_v2(args)
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


# Rewind v2 tools ----------------------------------------------------------------------


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _expected_version(text: str) -> int:
    from rewind.model import ANY_VERSION, NO_STREAM, STREAM_EXISTS

    named = {"any": ANY_VERSION, "no-stream": NO_STREAM, "exists": STREAM_EXISTS}
    if text in named:
        return named[text]
    try:
        return _non_negative(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a version >= 0, any, no-stream or exists, got {text!r}"
        ) from None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _iso_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    # A time without a zone is taken as UTC, like the times the server records.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _add_read_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backwards", action="store_true", help="newest first")
    parser.add_argument(
        "--max-count", type=_non_negative, metavar="N", help="print at most N events"
    )


def _add_v2_tools(commands: argparse._SubParsersAction[_Parser]) -> None:
    append = commands.add_parser(
        "append",
        help="append events to a stream",
        description="Append each DATA argument (with none, each line of stdin) as one "
        "event to STREAM, all in one transaction: all are stored or none.",
    )
    append.add_argument("stream", metavar="STREAM")
    append.add_argument("data", nargs="*", metavar="DATA")
    append.add_argument(
        "--expected-version",
        type=_expected_version,
        default="any",
        metavar="N|any|no-stream|exists",
        help="refuse unless the stream's last version is N, the stream does not exist, "
        "or it exists (default any)",
    )
    append.add_argument("--type", default="", metavar="TYPE", help="event type of every event")
    _add_endpoint_options(append, streaming=False)
    append.set_defaults(handler=_append)

    read = commands.add_parser(
        "read",
        help="print a stream's events",
        description="Print the events of STREAM by version, one per line: position, "
        "stream, version, type, id and data, separated by tabs.",
    )
    read.add_argument("stream", metavar="STREAM")
    read.add_argument("--from-version", type=_non_negative, metavar="N", help="start at version N")
    _add_read_options(read)
    _add_endpoint_options(read, streaming=False)
    read.set_defaults(handler=_read)

    read_all = commands.add_parser(
        "read-all",
        help="print events of every stream in global order",
        description="Print events of every stream by global position, formatted like "
        "`rewind read`.",
    )
    start = read_all.add_mutually_exclusive_group()
    start.add_argument(
        "--from-position", type=_non_negative, metavar="N", help="start at position N"
    )
    start.add_argument(
        "--since",
        type=_iso_time,
        metavar="TIME",
        help="start at the first event committed at or after TIME (ISO 8601; UTC unless "
        "a zone is given); backwards, at the last one before it",
    )
    _add_read_options(read_all)
    read_all.add_argument(
        "--stream-prefix", metavar="P", help="only streams whose names start with P"
    )
    read_all.add_argument(
        "--type",
        dest="types",
        action="append",
        metavar="T",
        help="only events of type T (repeatable)",
    )
    _add_endpoint_options(read_all, streaming=False)
    read_all.set_defaults(handler=_read_all)

    streams = commands.add_parser(
        "streams", help="list stream names", description="Print every stream name, in order."
    )
    streams.add_argument("--after", metavar="NAME", help="start after this name")
    _add_endpoint_options(streams, streaming=False)
    streams.set_defaults(handler=_streams)

    info = commands.add_parser(
        "info",
        help="show what the server is and holds",
        description="Print the server's version, storage, protocols, newest position, "
        "limits and round-trip time.",
    )
    _add_endpoint_options(info, streaming=False)
    info.set_defaults(handler=_info)


def _text(value: str) -> str:
    return _escape(value.encode("utf-8", errors="surrogateescape"))


def _bytes_fields(record: dict[str, object], key: str, value: bytes) -> None:
    try:
        record[key] = value.decode("utf-8")
    except UnicodeDecodeError:
        record[f"{key}_base64"] = base64.b64encode(value).decode("ascii")


def _iso_from_us(timestamp: int) -> str:
    return (_EPOCH + timedelta(microseconds=timestamp)).isoformat()


def _format_recorded(event: RecordedEvent, as_json: bool) -> str:
    """One line for a v2 event: position, stream, version, type, id, data."""
    if not as_json:
        fields = (event.stream, event.event_type)
        stream, event_type = (_text(field) for field in fields)
        return (
            f"{event.position}\t{stream}\t{event.version}\t{event_type}\t"
            f"{event.event_id}\t{_escape(event.data)}"
        )
    record: dict[str, object] = {
        "position": event.position,
        "stream": event.stream,
        "version": event.version,
        "type": event.event_type,
        "id": str(event.event_id),
        "recorded_at": _iso_from_us(event.recorded_at_us),
    }
    _bytes_fields(record, "data", event.data)
    _bytes_fields(record, "metadata", event.metadata)
    return json.dumps(record, ensure_ascii=False)


def _print_recorded(events: Iterable[RecordedEvent], as_json: bool, *, flush: bool) -> None:
    out = sys.stdout
    for event in events:
        out.write(_format_recorded(event, as_json) + "\n")
        if flush:
            out.flush()
    out.flush()


def _append(args: argparse.Namespace) -> int:
    from rewind.client import Client, ClientError, EventData, RequestTimeout

    events = [EventData(data, type=args.type) for data in _input_events(args)]
    if not events:
        return _fail("append: no events given (no DATA arguments and nothing on stdin)")
    with Client(args.query_endpoint, timeout=args.timeout) as client:
        try:
            result = client.append(args.stream, events, expected_version=args.expected_version)
        except RequestTimeout as exc:
            return _fail(f"append failed: {exc}; the events may or may not be stored")
        except (ClientError, ValueError) as exc:
            return _fail(f"append failed, nothing stored: {exc}")
    if args.json:
        record = {
            "stream": result.stream,
            "first_position": result.first_position,
            "last_position": result.last_position,
            "first_version": result.first_version,
            "last_version": result.last_version,
            "ids": [str(event_id) for event_id in result.event_ids],
            "recorded_at": result.recorded_at.isoformat(),
        }
        print(json.dumps(record, ensure_ascii=False))
    else:
        print(
            f"appended {len(result.event_ids)} event(s) to {_text(result.stream)}: "
            f"positions {result.first_position}-{result.last_position}, "
            f"versions {result.first_version}-{result.last_version}"
        )
    return 0


def _read(args: argparse.Namespace) -> int:
    from rewind.client import Client, ClientError

    with Client(args.query_endpoint, timeout=args.timeout) as client:
        try:
            events = client.read_stream(
                args.stream,
                from_version=args.from_version,
                backwards=args.backwards,
                max_count=args.max_count,
            )
            with events:
                _print_recorded(events, args.json, flush=False)
        except (ClientError, ValueError) as exc:
            return _fail(f"read failed: {exc}")
    return 0


def _read_all(args: argparse.Namespace) -> int:
    from rewind.client import Client, ClientError

    with Client(args.query_endpoint, timeout=args.timeout) as client:
        try:
            events = client.read_all(
                from_position=args.from_position,
                since=args.since,
                backwards=args.backwards,
                max_count=args.max_count,
                stream_prefix=args.stream_prefix,
                event_types=args.types,
            )
            with events:
                _print_recorded(events, args.json, flush=False)
        except (ClientError, ValueError) as exc:
            return _fail(f"read-all failed: {exc}")
    return 0


def _streams(args: argparse.Namespace) -> int:
    from rewind.client import Client, ClientError

    with Client(args.query_endpoint, timeout=args.timeout) as client:
        try:
            for name in client.list_streams(after=args.after):
                line = (
                    json.dumps({"stream": name}, ensure_ascii=False) if args.json else _text(name)
                )
                sys.stdout.write(line + "\n")
        except (ClientError, ValueError) as exc:
            return _fail(f"streams failed: {exc}")
    sys.stdout.flush()
    return 0


def _info(args: argparse.Namespace) -> int:
    from rewind.client import Client, ClientError

    with Client(args.query_endpoint, timeout=args.timeout) as client:
        try:
            round_trip = client.ping()
            info = client.server_info()
        except ClientError as exc:
            return _fail(f"info failed: {exc}")
    record: dict[str, object] = {
        "server_version": info.server_version,
        "storage": info.storage_kind,
        "durable": info.durable,
        "protocols": list(info.protocols),
        "head_position": info.head_position,
        "server_time": info.server_time.isoformat(),
        "max_batch_size": info.max_batch_size,
        "max_credit": info.max_credit,
        "max_append_events": info.max_append_events,
        "max_message_bytes": info.max_message_bytes,
        "round_trip_ms": round(round_trip * 1000, 3),
    }
    if args.json:
        print(json.dumps(record, ensure_ascii=False))
        return 0
    for key, value in record.items():
        shown = " ".join(map(str, value)) if isinstance(value, list) else value
        if isinstance(shown, bool):
            shown = "yes" if shown else "no"
        print(f"{key}: {shown}")
    return 0


def _tail_v2(args: argparse.Namespace) -> int:
    from rewind.client import Client, ClientError

    with Client(
        args.query_endpoint,
        v2_streaming_endpoint=args.v2_streaming_endpoint,
        timeout=args.timeout,
    ) as client:
        try:
            subscription = client.subscribe(
                from_position=args.from_position,
                stream_prefix=args.stream_prefix,
                idle_timeout=args.idle_timeout,
            )
            with subscription:
                _print_recorded(subscription, args.json, flush=True)
        except (ClientError, ValueError) as exc:
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
    _add_v2_tools(commands)
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
