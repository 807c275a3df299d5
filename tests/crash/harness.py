"""The crash harness: load a real server, SIGKILL it at random moments, check the store.

One run starts ``rewind serve --storage sqlite:PATH`` (or a fresh PostgreSQL
schema, :mod:`tests.crash.backends`) and its load clients
(:mod:`tests.crash.workers`), then repeats a kill cycle:

1. let the clients write for a random 50-400 ms;
2. SIGKILL the server (sometimes just after a SIGTERM, in the middle of its
   graceful stop) and start it again on the same file and ports (sometimes
   killing an extra incarnation while it starts);
3. hold the clients between requests (requests spanning the kill finish
   first, answered by the restarted server after their retries);
4. re-send, with the same event ids, every v2 append that got no answer
   (an idempotent re-send must answer with the original positions, or
   refuse if nothing was stored);
5. read the store back through v2 READ_ALL (what is new since the last
   cycle; all of it every 25 cycles) and check it against the ledger, the
   feeds and a catch-up subscriber that runs throughout
   (:mod:`tests.crash.checks`).

After the last cycle the server is stopped, every stream is read back with
READ_STREAM, and the store is opened directly: the SQLite file's ``PRAGMA
integrity_check`` must pass, or the PostgreSQL schema must keep Rewind's
invariants (positions, stream versions, unique ids, commit times) when asked
in SQL; either way its rows must be what the server returned.

Every random choice comes from the run's seed (``REWIND_CRASH_SEED``); a
failure names it. The thread interleaving and the moment a kill lands in a
request are up to the machine, so a seed repeats the run's shape, not its
every step.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from rewind.client import Client, EventData, RequestTimeout, WrongExpectedVersion
from rewind.model import RecordedEvent
from tests.crash.backends import Backend, SQLiteFile
from tests.crash.checks import (
    SeedFeedChecker,
    StoreChecker,
    SubscriptionChecker,
    V2FeedChecker,
    Verdict,
)
from tests.crash.feeds import CatchUpSubscriber, FeedCollector, seed_feed, v2_feed
from tests.crash.ledger import Ack, Kind, Ledger, Op, Outcome
from tests.crash.workers import AsyncV2Appender, Gate, SeedPublisher, V2Appender, Worker
from tests.support import ServerProcess

CYCLES_VARIABLE = "REWIND_SOAK_CYCLES"
SEED_VARIABLE = "REWIND_CRASH_SEED"
FULL_READ_EVERY = 25
"""Cycles between re-reads of the whole store (the others read what is new)."""
PAUSE_TIMEOUT = 60.0
CATCH_UP_TIMEOUT = 30.0
"""How long the catch-up subscriber may take to reach the end of the store."""
"""How long the clients may take to finish their requests after a restart."""


class CrashSafetyError(AssertionError):
    """A rule of crash safety was broken; the message names the seed to rerun with."""


class CrashServer(ServerProcess):
    """A server process that can also be killed and started again on its ports."""

    def crash_restart(
        self, *, terminate_first: float | None = None, kill_starting_after: float | None = None
    ) -> None:
        """SIGKILL the server, then start it again on the same endpoints and storage.

        With ``terminate_first``, SIGTERM comes that many seconds before the
        SIGKILL, which then lands in the middle of the graceful shutdown.
        With ``kill_starting_after``, an extra incarnation is started first and
        killed after that many seconds: while Python starts, while the store
        is opened and recovered, or once it serves the waiting clients.
        """
        if terminate_first is not None and self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            time.sleep(terminate_first)
        self.kill()
        self._use_resolved_endpoints()
        if kill_starting_after is not None:
            doomed = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
            )
            time.sleep(kill_starting_after)
            doomed.kill()
            doomed.wait()
        self.start()


@dataclass(frozen=True)
class CrashConfig:
    """The shape of one run."""

    cycles: int
    seed: int
    min_load: float = 0.05
    """Shortest stretch of load before a kill, in seconds."""
    max_load: float = 0.4
    seed_publishers: int = 1
    appenders: int = 2
    async_appenders: int = 1
    client_timeout: float = 0.25
    """Each client's wait for one reply; short, so retries span the restart."""
    client_retries: int = 12
    terminations: float = 0.1
    """Share of cycles that send SIGTERM 0-50 ms before the SIGKILL."""
    startup_kills: float = 0.15
    """Share of cycles that also kill the restarting server, 0-600 ms after it is started."""
    impatient_appenders: int = 1
    """Appenders that never retry, so their appends spanning a kill go unanswered
    and the harness re-sends them."""

    @classmethod
    def from_environment(cls, default_cycles: int) -> CrashConfig:
        """Cycles from ``REWIND_SOAK_CYCLES`` and seed from ``REWIND_CRASH_SEED``, if set."""
        cycles = int(os.environ.get(CYCLES_VARIABLE) or default_cycles)
        seed_text = os.environ.get(SEED_VARIABLE)
        seed = int(seed_text) if seed_text else random.SystemRandom().randrange(2**32)
        return cls(cycles=cycles, seed=seed)


@dataclass
class CrashReport:
    """The figures of a run."""

    seed: int
    cycles: int = 0
    """Kill cycles survived."""
    terminations: int = 0
    """Cycles whose SIGKILL came during a graceful shutdown (SIGTERM just before)."""
    startup_kills: int = 0
    """Cycles that also killed the server while it was starting again."""
    ops: int = 0
    events_sent: int = 0
    events_acked: int = 0
    events_stored: int = 0
    lost: int = 0
    duplicates: int = 0
    refused_ops: int = 0
    unknown_ops: int = 0
    """Requests still without an answer at the end (seed PUBLISH timeouts, mostly)."""
    resent_ops: int = 0
    """v2 appends the harness re-sent after their client gave up."""
    resent_found_stored: int = 0
    """Of those, appends the first attempt had stored: the re-send got the original positions."""
    spanned_kill: int = 0
    """Acknowledged appends that were in flight across a kill."""
    committed_before_kill: int = 0
    """Of those, appends committed before the kill but answered by the restarted server."""
    check_seconds: float = 0.0
    """Time spent reading the store back and checking it."""
    seed_feed_messages: int = 0
    v2_feed_messages: int = 0
    subscribed_events: int = 0
    """Events a catch-up subscription across the kills delivered (all, in the end)."""
    subscriptions: int = 0
    elapsed: float = 0.0
    kills: list[float] = field(default_factory=list, repr=False)
    ready: list[float] = field(default_factory=list, repr=False)

    def summary(self) -> str:
        """One paragraph of figures."""
        return (
            f"crash harness, seed {self.seed}: {self.cycles} kill cycles "
            f"({self.terminations} during a graceful stop, {self.startup_kills} also "
            f"killing the restart) in {self.elapsed:.1f} s; "
            f"{self.ops} requests, {self.events_sent} events sent, "
            f"{self.events_acked} acknowledged, {self.events_stored} stored, "
            f"{self.lost} lost, {self.duplicates} duplicated; {self.refused_ops} refused, "
            f"{self.unknown_ops} unanswered, {self.resent_ops} re-sent after a timeout "
            f"({self.resent_found_stored} found stored); "
            f"{self.spanned_kill} acknowledged appends spanned a kill, "
            f"{self.committed_before_kill} of them committed before it and answered "
            f"after the restart; feeds: {self.seed_feed_messages} seed and "
            f"{self.v2_feed_messages} v2 messages checked, {self.subscribed_events} events "
            f"delivered to a catch-up subscriber ({self.subscriptions} subscriptions); "
            f"{self.check_seconds:.1f} s checking"
        )


class CrashRun:
    """One run of the harness on a directory of its own; see the module docstring."""

    def __init__(
        self,
        config: CrashConfig,
        directory: Path,
        *,
        storage: str | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.config = config
        self.backend = backend or SQLiteFile(directory / "events.db")
        self.rng = random.Random(config.seed)
        self.ledger = Ledger()
        self.gate = Gate()
        self.report = CrashReport(seed=config.seed)
        # Another storage URL is for showing that the harness notices a store
        # that loses events (memory:); the final check needs the backend's store.
        self.server = CrashServer(storage or self.backend.storage)
        self.workers: list[Worker] = []
        self.seed_feed: FeedCollector[tuple[bytes, bytes, bytes]] | None = None
        self.v2_feed: FeedCollector[RecordedEvent] | None = None
        self.checker: Client | None = None
        self.store = StoreChecker(self.ledger.sender_of)
        self.seed_checker = SeedFeedChecker()
        self.v2_checker = V2FeedChecker()
        self.subscriber: CatchUpSubscriber | None = None
        self.subscription_checker = SubscriptionChecker()

    def run(self) -> CrashReport:
        """Run every cycle and the final check; raise :class:`CrashSafetyError` on a violation."""
        started = time.monotonic()
        try:
            with self._running():
                for cycle in range(1, self.config.cycles + 1):
                    self._cycle(cycle)
                    self.report.cycles = cycle
                self._finish()
        except CrashSafetyError:
            raise
        except Exception as exc:
            # A server that does not come back, a client error: name the seed too.
            self._fail(self.report.cycles + 1, f"{type(exc).__name__}: {exc}")
        self.report.elapsed = time.monotonic() - started
        return self.report

    @contextmanager
    def _running(self) -> Iterator[None]:
        with ExitStack() as stack:
            self.server.start()
            stack.callback(self.server.kill)
            self.seed_feed = seed_feed(self.server.streaming_endpoint).started()
            stack.callback(self.seed_feed.stop)
            self.v2_feed = v2_feed(self.server.v2_streaming_endpoint).started()
            stack.callback(self.v2_feed.stop)
            self.subscriber = CatchUpSubscriber(
                self.server.query_endpoint, self.server.v2_streaming_endpoint
            )
            self.subscriber.start()
            stack.callback(self.subscriber.stop)
            self.checker = Client(self.server.query_endpoint, timeout=5.0, retries=3)
            stack.callback(self.checker.close)
            self.workers = self._workers()
            stack.callback(self._stop_workers)
            for worker in self.workers:
                worker.start()
            yield

    def _workers(self) -> list[Worker]:
        config, endpoint = self.config, self.server.query_endpoint
        workers: list[Worker] = []
        for index in range(config.seed_publishers):
            workers.append(
                SeedPublisher(
                    f"seed{index}",
                    self.ledger,
                    self.gate,
                    config.seed,
                    endpoint,
                    config.client_timeout,
                )
            )
        appenders: list[tuple[type[V2Appender], str]] = [
            (V2Appender, f"v2w{index}") for index in range(config.appenders)
        ]
        appenders += [(AsyncV2Appender, f"aio{index}") for index in range(config.async_appenders)]
        for cls, name in appenders:
            workers.append(
                cls(
                    name,
                    self.ledger,
                    self.gate,
                    config.seed,
                    endpoint,
                    config.client_timeout,
                    config.client_retries,
                )
            )
        for index in range(config.impatient_appenders):
            # Without retries its appends that span a kill stay unanswered; it
            # chooses every id, so the harness can re-send them exactly.
            workers.append(
                V2Appender(
                    f"once{index}",
                    self.ledger,
                    self.gate,
                    config.seed,
                    endpoint,
                    config.client_timeout,
                    0,
                    own_ids=1.0,
                )
            )
        return workers

    def _stop_workers(self) -> None:
        self.gate.stop()
        for worker in self.workers:
            worker.join(PAUSE_TIMEOUT)

    # One cycle -----------------------------------------------------------------------

    def _cycle(self, cycle: int) -> None:
        self.gate.resume()
        time.sleep(self.rng.uniform(self.config.min_load, self.config.max_load))
        self.report.kills.append(time.time())
        terminate_first = kill_starting_after = None
        if self.rng.random() < self.config.terminations:
            terminate_first = self.rng.uniform(0.0, 0.05)
            self.report.terminations += 1
        if self.rng.random() < self.config.startup_kills:
            kill_starting_after = self.rng.uniform(0.0, 0.6)
            self.report.startup_kills += 1
        self.server.crash_restart(
            terminate_first=terminate_first, kill_starting_after=kill_starting_after
        )
        self.report.ready.append(time.time())
        if not self.gate.pause(PAUSE_TIMEOUT):
            self._fail(cycle, "clients still waiting for answers long after the restart")
        checking = time.monotonic()
        self._resend_unanswered()
        read = self._read_store(full=cycle % FULL_READ_EVERY == 0)
        verdicts = [
            self.store.check(self.ledger.ops()),
            *self._feed_verdicts(final=False),
        ]
        verdicts[0].problems.extend(read)
        self._judge(cycle, verdicts)
        self.report.check_seconds += time.monotonic() - checking

    def _resend_unanswered(self) -> None:
        """Re-send each unanswered v2 append whose ids the harness chose, exactly as before."""
        assert self.checker is not None
        for op in self.ledger.ops():
            if op.outcome is not Outcome.UNKNOWN or op.kind is Kind.PUBLISH:
                continue
            if any(event_id is None for event_id in op.event_ids):
                continue
            events = [
                EventData(data, type=op.kind.value, id=event_id)
                for data, event_id in zip(op.data, op.event_ids, strict=True)
            ]
            op.resent = True
            try:
                result = self.checker.append(
                    op.stream, events, expected_version=op.expected_version
                )
            except WrongExpectedVersion:
                # Not stored, and never can be: the stream has moved past the
                # version this append expects.
                op.outcome = Outcome.REFUSED
                continue
            except RequestTimeout:
                continue
            op.ack = Ack(
                result.first_position,
                result.last_position,
                result.last_version,
                result.event_ids,
                result.recorded_at_us,
            )
            op.outcome = Outcome.ACKED

    def _read_store(self, *, full: bool) -> list[str]:
        """Read the store through the server: all of it, or what is new since the last read.

        A partial read also reads the last event seen before again, which
        must be unchanged; a full read must repeat everything read before.
        """
        assert self.checker is not None
        old = self.store
        if full or old.head == 0:
            self.store = StoreChecker(self.ledger.sender_of)
            self.store.add(list(self.checker.read_all()))
            if self.store.events[: old.head] != old.events:
                return ["events read in an earlier cycle have changed"]
            return []
        last = old.events[-1]
        again = list(self.checker.read_all(from_position=last.position, max_count=1))
        old.add(list(self.checker.read_all(from_position=last.position + 1)))
        if again != [last]:
            return [f"position {last.position} changed since it was read: {again!r}"]
        return []

    def _feed_verdicts(self, *, final: bool) -> list[Verdict]:
        assert self.seed_feed is not None and self.v2_feed is not None
        assert self.subscriber is not None
        seed = self.seed_feed.snapshot()
        v2 = self.v2_feed.snapshot()
        delivered = self.subscriber.snapshot()
        self.report.seed_feed_messages = len(seed)
        self.report.v2_feed_messages = len(v2)
        self.report.subscribed_events = len(delivered)
        self.report.subscriptions = self.subscriber.subscriptions
        verdicts = [
            self.seed_checker.check(seed, self.store, final=final),
            self.v2_checker.check(v2, self.store, final=final),
            self.subscription_checker.check(delivered, self.store, final=final),
        ]
        for failure in (self.seed_feed.failure, self.v2_feed.failure, self.subscriber.failure):
            if failure:
                verdicts[0].problem(failure)
        return verdicts

    def _judge(self, cycle: int, verdicts: Sequence[Verdict]) -> None:
        store = verdicts[0]
        self.report.events_stored = store.stored_events
        self.report.events_acked = store.acked_events
        self.report.lost = store.lost_events
        self.report.duplicates = store.duplicate_events
        problems = [problem for verdict in verdicts for problem in verdict.problems]
        problems += [failure for worker in self.workers for failure in worker.failures]
        if problems:
            shown = Verdict(problems=problems)
            self._fail(cycle, shown.describe())

    def _fail(self, cycle: int, text: str) -> NoReturn:
        raise CrashSafetyError(
            f"crash safety violated in cycle {cycle} (rerun with "
            f"{SEED_VARIABLE}={self.config.seed}):\n{text}\n{self.report.summary()}"
        )

    # The end ---------------------------------------------------------------------------

    def _finish(self) -> None:
        cycle = self.report.cycles
        self._stop_workers()
        self._resend_unanswered()
        read = self._read_store(full=True)
        events = self.store.events
        per_stream = self._read_streams(events)
        time.sleep(0.2)  # let the last broadcasts reach the collectors
        assert self.seed_feed is not None and self.v2_feed is not None
        assert self.subscriber is not None
        self.seed_feed.stop()
        self.v2_feed.stop()
        deadline = time.monotonic() + CATCH_UP_TIMEOUT
        while len(self.subscriber.events) < len(events) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.subscriber.stop()
        code = self.server.stop()
        verdicts = [
            self.store.check(self.ledger.ops()),
            *self._feed_verdicts(final=True),
        ]
        verdicts[0].problems.extend(read)
        if code != 0:
            verdicts[0].problem(f"server exited with status {code} on SIGTERM")
        verdicts[0].problems.extend(per_stream)
        verdicts[0].problems.extend(self.backend.check_stored(events))
        self._tally()
        self._judge(cycle, verdicts)

    def _read_streams(self, events: Sequence[RecordedEvent]) -> list[str]:
        """READ_STREAM of every stream must give its events of READ_ALL, in order."""
        assert self.checker is not None
        streams: dict[str, list[RecordedEvent]] = {}
        for event in events:
            streams.setdefault(event.stream, []).append(event)
        problems = []
        for stream, expected in streams.items():
            if list(self.checker.read_stream(stream)) != expected:
                problems.append(f"READ_STREAM {stream!r} differs from READ_ALL")
        if sorted(self.checker.list_streams()) != sorted(streams):
            problems.append("LIST_STREAMS differs from the streams READ_ALL shows")
        return problems

    def _tally(self) -> None:
        ops = self.ledger.ops()
        report = self.report
        report.ops = len(ops)
        report.events_sent = sum(len(op.tags) for op in ops)
        report.refused_ops = sum(op.outcome is Outcome.REFUSED for op in ops)
        report.unknown_ops = sum(op.outcome is Outcome.UNKNOWN for op in ops)
        report.resent_ops = sum(op.resent for op in ops)
        report.resent_found_stored = sum(
            op.resent
            and op.ack is not None
            and op.finished is not None
            and op.ack.recorded_at_us / 1e6 < op.finished
            for op in ops
        )
        for op in ops:
            spanned, before = self._across_kill(op)
            report.spanned_kill += spanned
            report.committed_before_kill += before

    def _across_kill(self, op: Op) -> tuple[bool, bool]:
        """Whether an acknowledged op was in flight across a kill; and whether it was
        committed before the kill yet answered only once the server was back."""
        if op.outcome is not Outcome.ACKED or op.resent or op.finished is None:
            return False, False
        for killed, ready in zip(self.report.kills, self.report.ready, strict=True):
            if op.started < killed < op.finished:
                committed_before = (
                    op.ack is not None
                    and op.ack.recorded_at_us / 1e6 < killed
                    and op.finished > ready
                )
                return True, committed_before
        return False, False


def run_crash_harness(
    config: CrashConfig,
    directory: Path,
    *,
    storage: str | None = None,
    backend: Backend | None = None,
) -> CrashReport:
    """Run the harness in ``directory``; return its figures or raise :class:`CrashSafetyError`.

    The server stores in ``backend`` (by default the SQLite file
    ``directory/events.db``) unless ``storage`` names another store, which
    the final check then does not open.
    """
    return CrashRun(config, directory, storage=storage, backend=backend).run()
