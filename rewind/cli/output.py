"""How ``rewind`` prints events: one unambiguous line per event, or one JSON object."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rewind.model import RecordedEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def escape(data: bytes) -> str:
    """Render event data on one line: UTF-8 as is, backslash escapes for the rest.

    Backslashes themselves are doubled, so the rendering can be read back exactly.
    """
    text = data.replace(b"\\", b"\\\\").decode("utf-8", errors="backslashreplace")
    if "\n" in text or "\r" in text or "\t" in text:
        text = text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return text


def format_seed_event(event_id: str, data: bytes, as_json: bool) -> str:
    """One line for a seed-protocol event: id, tab, data (or a JSON object)."""
    if not as_json:
        return f"{event_id}\t{escape(data)}"
    record: dict[str, str] = {"id": event_id}
    try:
        record["data"] = data.decode("utf-8")
    except UnicodeDecodeError:
        record["data_base64"] = base64.b64encode(data).decode("ascii")
    return json.dumps(record, ensure_ascii=False)


def print_seed_events(events: Iterable[tuple[str, bytes]], as_json: bool) -> None:
    """Print seed-protocol events as they come, flushing each line."""
    out = sys.stdout
    for event_id, data in events:
        out.write(format_seed_event(event_id, data, as_json) + "\n")
        out.flush()


def text(value: str) -> str:
    """A name (stream, type) on one unambiguous line, escaped like event data."""
    return escape(value.encode("utf-8", errors="surrogateescape"))


def _bytes_fields(record: dict[str, object], key: str, value: bytes) -> None:
    try:
        record[key] = value.decode("utf-8")
    except UnicodeDecodeError:
        record[f"{key}_base64"] = base64.b64encode(value).decode("ascii")


def _iso_from_us(timestamp: int) -> str:
    return (_EPOCH + timedelta(microseconds=timestamp)).isoformat()


def format_event(event: RecordedEvent, as_json: bool) -> str:
    """One line for a v2 event: position, stream, version, type, id, data."""
    if not as_json:
        fields = (event.stream, event.event_type)
        stream, event_type = (text(field) for field in fields)
        return (
            f"{event.position}\t{stream}\t{event.version}\t{event_type}\t"
            f"{event.event_id}\t{escape(event.data)}"
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


def print_events(events: Iterable[RecordedEvent], as_json: bool, *, flush: bool) -> None:
    """Print v2 events; ``flush`` after every line when following a live feed."""
    out = sys.stdout
    for event in events:
        out.write(format_event(event, as_json) + "\n")
        if flush:
            out.flush()
    out.flush()
