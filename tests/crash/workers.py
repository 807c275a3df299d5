"""Load clients for the crash harness: threads that write tagged events and keep a ledger.

Each worker owns its client (ZeroMQ sockets are not thread-safe) and its own
random generator seeded from the run's seed, so the mix of requests repeats
for a given seed (the interleaving with the kills does not, quite).

* :class:`SeedPublisher` sends seed-protocol ``PUBLISH`` over REQ. It is never
  retried (the seed protocol cannot recognise a repeat), so a timeout leaves
  the outcome unknown.
* :class:`V2Appender` sends v2 ``APPEND`` of one event or of a batch, to
  streams of its own (with exact expected versions) and to streams shared
  with the other appenders (any version, or a guessed exact version that
  often loses the race and is refused). Its client retries with the same
  event ids, so an append that spans a kill and restart is answered by the
  restarted server.
* :class:`AsyncV2Appender` does the same through :class:`~rewind.aio.AsyncClient`.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import zmq
import zmq.asyncio

from rewind.aio import AsyncClient
from rewind.client import (
    ANY_VERSION,
    NO_STREAM,
    AppendResult,
    Client,
    EventData,
    RequestTimeout,
    ServerError,
    StreamInfo,
    WrongExpectedVersion,
)
from tests.crash.ledger import SEED_STREAM, Ack, Kind, Ledger, Op, Outcome, event_data

SHARED_STREAMS = tuple(f"shared-{index}" for index in range(4))
MAX_PADDING = 300


class Gate:
    """Lets workers run, or holds them between requests while the harness checks.

    :meth:`pause` returns once no worker is inside a request, so the checker
    sees a store that no answered request is still changing.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._open = False
        self._stopping = False
        self._busy = 0

    def enter(self) -> bool:
        """Wait until the gate is open; ``False`` if the run is over."""
        with self._condition:
            while not self._open and not self._stopping:
                self._condition.wait()
            if self._stopping:
                return False
            self._busy += 1
            return True

    def leave(self) -> None:
        """A request is finished."""
        with self._condition:
            self._busy -= 1
            self._condition.notify_all()

    def resume(self) -> None:
        """Let workers send again."""
        with self._condition:
            self._open = True
            self._condition.notify_all()

    def pause(self, timeout: float) -> bool:
        """Hold workers between requests; ``False`` if some are still busy after ``timeout``."""
        with self._condition:
            self._open = False
            return self._condition.wait_for(lambda: self._busy == 0, timeout)

    def stop(self) -> None:
        """End the run: workers return at their next request."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()


class Worker(threading.Thread):
    """A load client thread: sends one request per turn while the gate is open."""

    def __init__(self, name: str, ledger: Ledger, gate: Gate, seed: int) -> None:
        super().__init__(name=name, daemon=True)
        self.ledger = ledger
        self.gate = gate
        self.rng = random.Random(f"{seed}-{name}")
        self.failures: list[str] = []
        """Answers that no crash can explain (the harness fails on any)."""
        self._count = 0

    def run(self) -> None:
        try:
            while self.gate.enter():
                try:
                    self.step()
                finally:
                    self.gate.leave()
        except Exception as exc:
            self.failures.append(f"{self.name} crashed: {exc!r}")
        finally:
            self.close()

    def step(self) -> None:
        """Send one request and record it."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the worker's sockets."""

    def new_op(
        self,
        kind: Kind,
        stream: str,
        events: int,
        *,
        expected_version: int = ANY_VERSION,
        own_ids: bool = False,
    ) -> Op:
        """A fresh op with tagged events, added to the ledger before it is sent."""
        self._count += 1
        op_id = f"{self.name}.{self._count}"
        tags = tuple(f"{op_id}.{index}" for index in range(events))
        return self.ledger.add(
            Op(
                op_id=op_id,
                kind=kind,
                stream=stream,
                tags=tags,
                data=tuple(event_data(tag, self.rng.randrange(MAX_PADDING)) for tag in tags),
                event_ids=tuple(
                    uuid.UUID(int=self.rng.getrandbits(128), version=4) if own_ids else None
                    for _ in tags
                ),
                expected_version=expected_version,
                started=time.time(),
            )
        )


class SeedPublisher(Worker):
    """Seed-protocol PUBLISH over REQ, one event at a time."""

    def __init__(
        self, name: str, ledger: Ledger, gate: Gate, seed: int, endpoint: str, timeout: float
    ) -> None:
        super().__init__(name, ledger, gate, seed)
        self.context: zmq.Context[Any] = zmq.Context()
        self.client = Client(endpoint, timeout=timeout, retries=0, context=self.context)

    def step(self) -> None:
        op = self.new_op(Kind.PUBLISH, SEED_STREAM, 1)
        try:
            self.client.publish(op.data[0])
            op.outcome = Outcome.ACKED
        except RequestTimeout:
            op.outcome = Outcome.UNKNOWN
        except ServerError as exc:
            # ERROR replies to PUBLISH all say the event was not stored.
            op.outcome = Outcome.REFUSED
            if "not stored" not in exc.reason:
                self.failures.append(f"{op.op_id}: unexpected error {exc.reason!r}")
        op.finished = time.time()

    def close(self) -> None:
        self.client.close()
        self.context.destroy(linger=0)


class V2Appender(Worker):
    """Rewind v2 appends, single and batched, through the synchronous client."""

    def __init__(
        self,
        name: str,
        ledger: Ledger,
        gate: Gate,
        seed: int,
        endpoint: str,
        timeout: float,
        retries: int,
        *,
        own_ids: float = 0.5,
    ) -> None:
        super().__init__(name, ledger, gate, seed)
        self.own_ids = own_ids
        """Share of appends whose event ids the worker chooses (the others leave it to
        the client)."""
        self.endpoint = endpoint
        self.timeout = timeout
        self.retries = retries
        self.own_streams = tuple(f"{name}-{index}" for index in range(3))
        # Last version of each own stream as far as this worker knows;
        # None after a timeout, until asked again.
        self.known: dict[str, int | None] = dict.fromkeys(self.own_streams, -1)
        self.connect()

    def connect(self) -> None:
        """Open the worker's client."""
        self.context: zmq.Context[Any] = zmq.Context()
        self.client = Client(
            self.endpoint, timeout=self.timeout, retries=self.retries, context=self.context
        )

    def append(self, stream: str, events: Sequence[EventData], expected: int) -> AppendResult:
        """Send one APPEND (retried by the client on silence)."""
        return self.client.append(stream, events, expected_version=expected)

    def stream_info(self, stream: str) -> StreamInfo | None:
        """Ask for a stream's state."""
        return self.client.stream_info(stream)

    def step(self) -> None:
        roll = self.rng.random()
        # Now and then a long batch, so a kill can land inside its transaction.
        batch = self.rng.randint(2, 6) if self.rng.random() < 0.95 else self.rng.randint(20, 200)
        own_ids = self.rng.random() < self.own_ids
        if roll < 0.3:
            op = self.new_op(Kind.APPEND, self.rng.choice(SHARED_STREAMS), 1, own_ids=own_ids)
        elif roll < 0.45:
            op = self.new_op(Kind.BATCH, self.rng.choice(SHARED_STREAMS), batch, own_ids=own_ids)
        elif roll < 0.55:
            stream = self.rng.choice(SHARED_STREAMS)
            guess = self._shared_guess(stream)
            op = self.new_op(Kind.BATCH, stream, batch, expected_version=guess, own_ids=own_ids)
        else:
            stream = self.rng.choice(self.own_streams)
            expected = self._own_version(stream)
            if expected is None:
                return
            kind, count = (Kind.APPEND, 1) if roll < 0.75 else (Kind.BATCH, batch)
            op = self.new_op(kind, stream, count, expected_version=expected, own_ids=own_ids)
        self.send(op)

    def send(self, op: Op) -> None:
        """Send ``op`` and record its outcome."""
        events = [
            EventData(data, type=op.kind.value, id=event_id)
            for data, event_id in zip(op.data, op.event_ids, strict=True)
        ]
        try:
            result = self.append(op.stream, events, op.expected_version)
        except WrongExpectedVersion as exc:
            op.outcome = Outcome.REFUSED
            self._learn(op.stream, exc.actual_version)
        except RequestTimeout:
            op.outcome = Outcome.UNKNOWN
            self._learn(op.stream, None)
        except ServerError as exc:
            op.outcome = Outcome.UNKNOWN
            self.failures.append(f"{op.op_id}: unexpected error {exc!r}")
        else:
            op.ack = Ack(
                first_position=result.first_position,
                last_position=result.last_position,
                last_version=result.last_version,
                event_ids=result.event_ids,
                recorded_at_us=result.recorded_at_us,
            )
            op.outcome = Outcome.ACKED
            self._learn(op.stream, result.last_version)
        op.finished = time.time()

    def _learn(self, stream: str, version: int | None) -> None:
        if stream in self.known:
            self.known[stream] = version

    def _own_version(self, stream: str) -> int | None:
        """The expected version for an own stream (exact, or NO_STREAM)."""
        known = self.known[stream]
        if known is None:
            try:
                info = self.stream_info(stream)
            except RequestTimeout:
                return None
            known = self.known[stream] = -1 if info is None else info.last_version
        return NO_STREAM if known < 0 else known

    def _shared_guess(self, stream: str) -> int:
        # Other writers move shared streams on, so an exact version read a
        # moment ago often no longer holds: a source of refused appends.
        try:
            info = self.stream_info(stream)
        except RequestTimeout:
            return NO_STREAM
        return NO_STREAM if info is None else info.last_version

    def close(self) -> None:
        self.client.close()
        self.context.destroy(linger=0)


class AsyncV2Appender(V2Appender):
    """:class:`V2Appender` through :class:`~rewind.aio.AsyncClient`, on its own event loop."""

    def connect(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.async_context = zmq.asyncio.Context()
        self.async_client = AsyncClient(
            self.endpoint,
            timeout=self.timeout,
            retries=self.retries,
            context=self.async_context,
        )

    def append(self, stream: str, events: Sequence[EventData], expected: int) -> AppendResult:
        return self.loop.run_until_complete(
            self.async_client.append(stream, events, expected_version=expected)
        )

    def stream_info(self, stream: str) -> StreamInfo | None:
        return self.loop.run_until_complete(self.async_client.stream_info(stream))

    def close(self) -> None:
        self.loop.run_until_complete(self.async_client.close())
        self.loop.close()
        self.async_context.destroy(linger=0)
