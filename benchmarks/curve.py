"""Row 10: what CURVE costs one client making single appends, one round trip at a time.

Two ``memory:`` servers run side by side, one with CURVE on and one without,
so the difference is the handshake-free steady state of encryption plus the
per-message User-Id look-up, not storage. Both are measured in alternation,
``rounds`` times, keeping each one's median, like rows 1 and 2.
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack
from typing import Any

import zmq

from benchmarks import clients
from benchmarks.processes import START_TIMEOUT, ServerProcess, cpu_seconds, stop_rewind
from benchmarks.report import Figure, Row
from benchmarks.suites import Run
from rewind.client import CurveKeys
from rewind.keyfiles import write_key_pair


def _curve_server(run: Run) -> tuple[ServerProcess, CurveKeys]:
    keys = run.scratch / "curve-keys"
    allowed = keys / "allowed"
    write_key_pair(keys, "server")
    _, client_secret = write_key_pair(keys, "client")
    allowed.mkdir()
    (allowed / "client.key").write_bytes((keys / "client.key").read_bytes())
    server = ServerProcess(
        "memory:",
        extra_args=[
            "--curve-secret-key",
            str(keys / "server.key_secret"),
            "--curve-allowed-keys",
            str(allowed),
        ],
    )
    return server, CurveKeys.from_files(keys / "server.key", client_secret)


def curve_cost(run: Run) -> list[Row]:
    """Row 10: seed PUBLISH round trips from one REQ client, CURVE on vs off."""
    s = run.settings
    request = clients.publish_frames(s.payload_size)
    rates: dict[str, list[float]] = {"plain": [], "curve": []}
    # Server CPU per request moves much less with the machine's load than rates do.
    cpu_us: dict[str, list[float]] = {"plain": [], "curve": []}
    with ExitStack() as stack:
        plain = ServerProcess("memory:")
        secured, keys = _curve_server(run)
        for server in (plain, secured):
            stack.callback(stop_rewind, server)
            server.start(timeout=START_TIMEOUT)
        context: zmq.Context[Any] = zmq.Context()
        stack.callback(context.destroy, 0)
        sockets = {"plain": clients.req_socket(context, plain.query_endpoint)}
        curve_socket: zmq.Socket[bytes] = context.socket(zmq.REQ)
        curve_socket.setsockopt(zmq.LINGER, 0)
        curve_socket.setsockopt(zmq.RCVTIMEO, clients.REPLY_TIMEOUT_MS)
        keys.apply(curve_socket)
        curve_socket.connect(secured.query_endpoint)
        sockets["curve"] = curve_socket
        assert plain.process is not None and secured.process is not None
        pids = {"plain": plain.process.pid, "curve": secured.process.pid}
        for socket in sockets.values():
            clients.round_trips(socket, request, clients.PUBLISHED, s.warmup_seconds)
        for round_number in range(s.rounds):
            run.progress(f"CURVE on and off, round {round_number + 1} of {s.rounds}")
            for name, socket in sockets.items():
                cpu_before = cpu_seconds(pids[name])
                count, seconds = clients.round_trips(
                    socket, request, clients.PUBLISHED, s.round_seconds
                )
                cpu_us[name].append((cpu_seconds(pids[name]) - cpu_before) / count * 1e6)
                rates[name].append(count / seconds)
    curve_rate = statistics.median(rates["curve"])
    plain_rate = statistics.median(rates["plain"])
    server_cpu = {name: statistics.median(values) for name, values in cpu_us.items()}
    run.notes.append(
        f"row 10: one PUBLISH round trip takes {1e6 / curve_rate:.0f} µs with CURVE and "
        f"{1e6 / plain_rate:.0f} µs without ({1e6 / curve_rate - 1e6 / plain_rate:+.0f} µs); "
        f"server CPU per request {server_cpu['curve']:.0f} µs with CURVE, "
        f"{server_cpu['plain']:.0f} µs without"
    )
    return [
        Row(
            key="10",
            name="PUBLISH, 1 REQ client, memory:, CURVE on",
            result=Figure(curve_rate, "/s"),
            baseline_name="the same, CURVE off",
            baseline=Figure(plain_rate, "/s"),
            target="(report only)",
            passed=None,
            details={
                "curve_rates": rates["curve"],
                "plain_rates": rates["plain"],
                "curve_server_cpu_us_per_request": cpu_us["curve"],
                "plain_server_cpu_us_per_request": cpu_us["plain"],
            },
        )
    ]
