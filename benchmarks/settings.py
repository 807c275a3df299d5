"""How long and how big each measurement is, for a full run and for ``--quick``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Settings:
    """Counts and durations; every measurement is bounded by one of these."""

    mode: str
    rounds: int
    """Single-client rows alternate their targets this many times and keep the median,
    so a slow patch of the machine hits the figure and its baseline alike."""
    round_seconds: float
    warmup_seconds: float
    clients: int
    concurrent_seconds: float
    concurrent_rounds: int
    """Row 3 alternates with its bare SQLite baseline this many times and keeps the medians."""
    bare_sqlite_seconds: float
    store_events: int
    read_events: int
    startup_repeats: int
    payload_size: int = 100
    page_size: int = 100
    """Events per seed QUERY reply: fixed by the protocol."""
    pipeline_events: int = 20_000
    """Single-event v2 appends per round of row 6 (each round: Rewind, then the echo)."""
    pipeline_window: int = 256
    """Requests one DEALER keeps in flight in row 6."""
    batch_events: int = 300_000
    """Events appended in row 7 (and inserted by its bare SQLite baseline)."""
    append_batch: int = 100
    batch_window: int = 8
    stream_read_events: int = 300_000
    """Events row 8 reads from the start and again from the middle of the big store."""
    read_batch: int = 1_000
    read_credit: int = 4
    subscribers: int = 10
    feed_rate: float = 5_000.0
    """Events per second the row 9 publisher appends at."""
    feed_seconds: float = 3.0


FULL = Settings(
    mode="full",
    rounds=5,
    round_seconds=1.0,
    warmup_seconds=0.3,
    clients=16,
    concurrent_seconds=5.0,
    concurrent_rounds=3,
    bare_sqlite_seconds=3.0,
    store_events=1_000_000,
    read_events=100_000,
    startup_repeats=3,
)

QUICK = Settings(
    mode="quick",
    rounds=1,
    round_seconds=0.5,
    warmup_seconds=0.1,
    clients=16,
    concurrent_seconds=1.5,
    concurrent_rounds=1,
    bare_sqlite_seconds=0.75,
    store_events=100_000,
    read_events=10_000,
    startup_repeats=1,
    pipeline_events=3_000,
    batch_events=20_000,
    stream_read_events=30_000,
    feed_seconds=0.5,
)
