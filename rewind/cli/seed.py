"""``rewind publish``, ``query`` and ``tail``: the seed protocol's single log."""

from __future__ import annotations

import argparse
import json

from rewind.cli.common import (
    Commands,
    add_endpoint_options,
    fail,
    input_events,
    make_client,
    non_negative,
)
from rewind.cli.output import print_seed_events
from rewind.cli.v2 import tail_v2


def add_seed_tools(commands: Commands) -> None:
    """Register ``publish``, ``query`` and ``tail``."""
    publish = commands.add_parser(
        "publish",
        help="publish events",
        description="Publish each DATA argument as one event; with none, each line of stdin.",
    )
    publish.add_argument("data", nargs="*", metavar="DATA")
    add_endpoint_options(publish, streaming=False)
    publish.set_defaults(handler=_publish)

    query = commands.add_parser(
        "query",
        help="print stored events",
        description="Print stored events after --from (exclusive) up to --to (inclusive).",
    )
    query.add_argument("--from", dest="from_id", metavar="ID", help="start after this event id")
    query.add_argument("--to", dest="to_id", metavar="ID", help="stop at this event id")
    add_endpoint_options(query, streaming=False)
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
        type=non_negative,
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
    add_endpoint_options(tail, streaming=True)
    tail.set_defaults(handler=_tail)


def _publish(args: argparse.Namespace) -> int:
    from rewind.client import ClientError

    count = 0
    with make_client(args) as client:
        try:
            for data in input_events(args):
                client.publish(data)
                count += 1
        except ClientError as exc:
            return fail(f"publish failed after {count} events: {exc}")
    if args.json:
        print(json.dumps({"published": count}))
    return 0


def _query(args: argparse.Namespace) -> int:
    from rewind.client import ClientError

    with make_client(args) as client:
        try:
            print_seed_events(
                ((e.id, e.data) for e in client.query(args.from_id, args.to_id)), args.json
            )
        except ClientError as exc:
            return fail(f"query failed: {exc}")
    return 0


def _tail(args: argparse.Namespace) -> int:
    from rewind.client import ClientError

    if args.stream_prefix is not None or args.from_position is not None:
        return tail_v2(args)
    with make_client(args) as client:
        live_only = args.after is None and not args.from_start
        events = client.follow(args.after, live_only=live_only, idle_timeout=args.idle_timeout)
        try:
            print_seed_events(((e.id, e.data) for e in events), args.json)
        except ClientError as exc:
            return fail(f"tail failed: {exc}")
        except KeyboardInterrupt:
            return 0
    return 0
