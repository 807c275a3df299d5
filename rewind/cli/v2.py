"""``rewind append``, ``read``, ``read-all``, ``streams``, ``info`` and ``tail --stream``:
streams and the global log (Rewind v2)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rewind.cli.common import (
    Commands,
    add_endpoint_options,
    fail,
    input_events,
    make_client,
    non_negative,
)
from rewind.cli.output import print_events, text

if TYPE_CHECKING:
    from rewind.client import Client
    from rewind.client.readers import EventReader


def _expected_version(text: str) -> int:
    from rewind.model import ANY_VERSION, NO_STREAM, STREAM_EXISTS

    named = {"any": ANY_VERSION, "no-stream": NO_STREAM, "exists": STREAM_EXISTS}
    if text in named:
        return named[text]
    try:
        return non_negative(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a version >= 0, any, no-stream or exists, got {text!r}"
        ) from None


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
        "--max-count", type=non_negative, metavar="N", help="print at most N events"
    )


def add_v2_tools(commands: Commands) -> None:
    """Register ``append``, ``read``, ``read-all``, ``streams`` and ``info``."""
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
    add_endpoint_options(append, streaming=False)
    append.set_defaults(handler=_append)

    read = commands.add_parser(
        "read",
        help="print a stream's events",
        description="Print the events of STREAM by version, one per line: position, "
        "stream, version, type, id and data, separated by tabs.",
    )
    read.add_argument("stream", metavar="STREAM")
    read.add_argument("--from-version", type=non_negative, metavar="N", help="start at version N")
    _add_read_options(read)
    add_endpoint_options(read, streaming=False)
    read.set_defaults(handler=_read)

    read_all = commands.add_parser(
        "read-all",
        help="print events of every stream in global order",
        description="Print events of every stream by global position, formatted like "
        "`rewind read`.",
    )
    start = read_all.add_mutually_exclusive_group()
    start.add_argument(
        "--from-position", type=non_negative, metavar="N", help="start at position N"
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
    add_endpoint_options(read_all, streaming=False)
    read_all.set_defaults(handler=_read_all)

    streams = commands.add_parser(
        "streams", help="list stream names", description="Print every stream name, in order."
    )
    streams.add_argument("--after", metavar="NAME", help="start after this name")
    add_endpoint_options(streams, streaming=False)
    streams.set_defaults(handler=_streams)

    info = commands.add_parser(
        "info",
        help="show what the server is and holds",
        description="Print the server's version, storage, protocols, newest position, "
        "limits and round-trip time.",
    )
    add_endpoint_options(info, streaming=False)
    info.set_defaults(handler=_info)


def _append(args: argparse.Namespace) -> int:
    from rewind.client import ClientError, EventData, RequestTimeout

    events = [EventData(data, type=args.type) for data in input_events(args)]
    if not events:
        return fail("append: no events given (no DATA arguments and nothing on stdin)")
    with make_client(args) as client:
        try:
            result = client.append(args.stream, events, expected_version=args.expected_version)
        except RequestTimeout as exc:
            return fail(f"append failed: {exc}; the events may or may not be stored")
        except (ClientError, ValueError) as exc:
            return fail(f"append failed, nothing stored: {exc}")
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
            f"appended {len(result.event_ids)} event(s) to {text(result.stream)}: "
            f"positions {result.first_position}-{result.last_position}, "
            f"versions {result.first_version}-{result.last_version}"
        )
    return 0


def _print_read(
    args: argparse.Namespace, what: str, open_read: Callable[[Client], EventReader]
) -> int:
    """Print every event of a read opened on a fresh client, or fail in one line."""
    from rewind.client import ClientError

    with make_client(args) as client:
        try:
            with open_read(client) as events:
                print_events(events, args.json, flush=False)
        except (ClientError, ValueError) as exc:
            return fail(f"{what} failed: {exc}")
    return 0


def _read(args: argparse.Namespace) -> int:
    return _print_read(
        args,
        "read",
        lambda client: client.read_stream(
            args.stream,
            from_version=args.from_version,
            backwards=args.backwards,
            max_count=args.max_count,
        ),
    )


def _read_all(args: argparse.Namespace) -> int:
    return _print_read(
        args,
        "read-all",
        lambda client: client.read_all(
            from_position=args.from_position,
            since=args.since,
            backwards=args.backwards,
            max_count=args.max_count,
            stream_prefix=args.stream_prefix,
            event_types=args.types,
        ),
    )


def _streams(args: argparse.Namespace) -> int:
    from rewind.client import ClientError

    with make_client(args) as client:
        try:
            for name in client.list_streams(after=args.after):
                line = json.dumps({"stream": name}, ensure_ascii=False) if args.json else text(name)
                sys.stdout.write(line + "\n")
        except (ClientError, ValueError) as exc:
            return fail(f"streams failed: {exc}")
    sys.stdout.flush()
    return 0


def _info(args: argparse.Namespace) -> int:
    from rewind.client import ClientError

    with make_client(args) as client:
        try:
            round_trip = client.ping()
            info = client.server_info()
        except ClientError as exc:
            return fail(f"info failed: {exc}")
    record: dict[str, object] = {
        "server_version": info.server_version,
        "storage": info.storage_kind,
        "durable": info.durable,
        "accepts_writes": info.accepts_writes,
        "write_failure": info.write_failure,
        "protocols": list(info.protocols),
        "head_position": info.head_position,
        "server_time": info.server_time.isoformat(),
        "max_batch_size": info.max_batch_size,
        "max_credit": info.max_credit,
        "max_append_events": info.max_append_events,
        "max_message_bytes": info.max_message_bytes,
        "max_event_bytes": info.max_event_bytes,
        "max_stream_name_bytes": info.max_stream_name_bytes,
        "round_trip_ms": round(round_trip * 1000, 3),
    }
    if args.json:
        print(json.dumps(record, ensure_ascii=False))
        return 0
    for key, value in record.items():
        if value is None:
            continue  # nothing to report, e.g. no write failure
        shown = " ".join(map(str, value)) if isinstance(value, list) else value
        if isinstance(shown, bool):
            shown = "yes" if shown else "no"
        print(f"{key}: {shown}")
    return 0


def tail_v2(args: argparse.Namespace) -> int:
    """``tail --stream``/``--from-position``: a catch-up subscription, printed as it goes."""
    from rewind.client import ClientError

    with make_client(args) as client:
        try:
            subscription = client.subscribe(
                from_position=args.from_position,
                stream_prefix=args.stream_prefix,
                idle_timeout=args.idle_timeout,
            )
            with subscription:
                print_events(subscription, args.json, flush=True)
        except (ClientError, ValueError) as exc:
            return fail(f"tail failed: {exc}")
        except KeyboardInterrupt:
            return 0
    return 0
