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
    bare_sqlite_seconds: float
    store_events: int
    read_events: int
    startup_repeats: int
    payload_size: int = 100
    page_size: int = 100
    """Events per seed QUERY reply: fixed by the protocol."""


FULL = Settings(
    mode="full",
    rounds=5,
    round_seconds=1.0,
    warmup_seconds=0.3,
    clients=16,
    concurrent_seconds=5.0,
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
    bare_sqlite_seconds=0.75,
    store_events=100_000,
    read_events=10_000,
    startup_repeats=1,
)
