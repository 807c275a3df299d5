"""CURVE against a real server process: who is served, who is refused, and the log.

Keys are made with ``rewind keygen`` once per module; each test gets its own
server (so its log holds only its own denials) on an SQLite file.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zmq

from rewind.aio import AsyncClient
from rewind.client import Client, CurveKeys, Forbidden, RequestTimeout, ServerError
from rewind.keyfiles import read_public_key
from rewind.protocol import gorewind
from tests.integration.helpers import wait_for
from tests.support import ServerProcess, run_rewind

DENIED_TIMEOUT = 0.5
"""How long a refused client waits for a reply that must not come."""
LOG_WAIT = 5.0


@dataclass(frozen=True)
class Keys:
    root: Path
    allowed: Path
    read_only: Path

    def secret(self, name: str) -> Path:
        return self.root / "clients" / f"{name}.key_secret"

    def public(self, name: str) -> Path:
        return self.root / "clients" / f"{name}.key"

    @property
    def server_secret(self) -> Path:
        return self.root / "server" / "server.key_secret"

    @property
    def server_public(self) -> Path:
        return self.root / "server" / "server.key"

    def curve(self, name: str, *, server: Path | None = None) -> CurveKeys:
        return CurveKeys.from_files(server or self.server_public, self.secret(name))

    def z85(self, name: str) -> str:
        return read_public_key(self.public(name)).decode("ascii")


def _keygen(directory: Path, name: str) -> None:
    result = run_rewind("keygen", str(directory), "--name", name)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    root = tmp_path_factory.mktemp("curve")
    _keygen(root / "server", "server")
    _keygen(root / "other-server", "server")
    for name in ("alice", "bob", "mallory"):
        _keygen(root / "clients", name)
    allowed, read_only = root / "allowed", root / "read-only"
    allowed.mkdir()
    read_only.mkdir()
    (allowed / "alice.key").write_bytes((root / "clients" / "alice.key").read_bytes())
    (read_only / "bob.key").write_bytes((root / "clients" / "bob.key").read_bytes())
    return Keys(root, allowed, read_only)


def curve_args(keys: Keys) -> list[str]:
    return [
        "--curve-secret-key",
        str(keys.server_secret),
        "--curve-allowed-keys",
        str(keys.allowed),
        "--curve-read-only-keys",
        str(keys.read_only),
    ]


@pytest.fixture
def server(keys: Keys, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(f"sqlite:{tmp_path / 'events.db'}", extra_args=curve_args(keys)) as process:
        yield process


def client(server: ServerProcess, curve: CurveKeys | None, **options: float) -> Client:
    return Client(
        server.query_endpoint,
        server.streaming_endpoint,
        v2_streaming_endpoint=server.v2_streaming_endpoint,
        curve=curve,
        **options,  # type: ignore[arg-type]
    )


def feed_socket(
    context: zmq.Context[zmq.Socket[bytes]], endpoint: str, curve: CurveKeys | None
) -> zmq.Socket[bytes]:
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        curve.apply(sub)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    return sub


def stored(server: ServerProcess, keys: Keys) -> list[bytes]:
    with client(server, keys.curve("alice")) as reader:
        return [event.data for event in reader.read_all()]


def test_allowed_key_appends_reads_and_subscribes(server: ServerProcess, keys: Keys) -> None:
    stream = f"acct-{uuid.uuid4().hex[:8]}"
    with client(server, keys.curve("alice")) as alice:
        first = alice.append(stream, [b"opened"])
        assert first.first_position == 1
        subscription = alice.subscribe(stream=stream, idle_timeout=5.0)
        seen = [next(subscription).data]
        alice.append(stream, [b"deposited"])  # live, through the encrypted v2 feed
        seen.append(next(subscription).data)
        subscription.close()
        assert seen == [b"opened", b"deposited"]
        alice.publish(b"seed event")
        assert [event.data for event in alice.query()][-1] == b"seed event"
        follower = alice.follow(idle_timeout=5.0)
        assert [next(follower).data for _ in range(3)] == [b"opened", b"deposited", b"seed event"]
    assert "refused" not in server.log
    assert server.stop() == 0  # the ZAP and monitor threads end with the server


def test_read_only_key_reads_and_subscribes_but_may_not_append(
    server: ServerProcess, keys: Keys, zmq_context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    with client(server, keys.curve("alice")) as alice:
        alice.append("ledger", [b"by alice"])
    bob_keys = keys.curve("bob")
    with client(server, bob_keys) as bob:
        with pytest.raises(Forbidden, match="forbidden"):
            bob.append("ledger", [b"by bob"])
        with pytest.raises(ServerError, match="forbidden"):
            bob.publish(b"by bob, seed")
        dealer = zmq_context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        bob_keys.apply(dealer)
        dealer.connect(server.query_endpoint)
        dealer.send_multipart([b"", b"PUBLISH", b"ledger", b"by bob, gorewind"])
        assert dealer.poll(5000)
        reply = dealer.recv_multipart()
        dealer.close()
        assert reply[1].startswith(gorewind.ERROR + b" forbidden"), reply
        # Reading and subscribing are allowed.
        assert [event.data for event in bob.read_stream("ledger")] == [b"by alice"]
        subscription = bob.subscribe(stream="ledger", idle_timeout=5.0)
        assert next(subscription).data == b"by alice"
        with client(server, keys.curve("alice")) as alice:
            alice.append("ledger", [b"live"])
        assert next(subscription).data == b"live"
        subscription.close()
    assert stored(server, keys) == [b"by alice", b"live"]
    assert wait_for(
        lambda: f"refused an append from read-only client key {keys.z85('bob')}" in server.log,
        LOG_WAIT,
    ), server.log


DENIED = {
    "unknown key": ("mallory", None, "is not allowed"),
    "no CURVE": (None, None, "the client does not use CURVE"),
    "wrong server key": ("alice", "other", "another server public key"),
}


@pytest.mark.parametrize("case", list(DENIED))
def test_refused_clients_get_nothing_processed_and_are_logged(
    case: str, server: ServerProcess, keys: Keys, zmq_context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    name, server_key, logged = DENIED[case]
    curve = None
    if name is not None:
        other = keys.root / "other-server" / "server.key" if server_key else None
        curve = keys.curve(name, server=other)
    feeds = [
        feed_socket(zmq_context, endpoint, curve)
        for endpoint in (server.streaming_endpoint, server.v2_streaming_endpoint)
    ]
    allowed_feed = feed_socket(zmq_context, server.v2_streaming_endpoint, keys.curve("alice"))
    with client(server, curve, timeout=DENIED_TIMEOUT, retries=0) as refused:
        with pytest.raises(RequestTimeout):
            refused.append("intruded", [b"v2"])
        with pytest.raises(RequestTimeout):
            refused.publish(b"seed")
        with pytest.raises(RequestTimeout):
            refused.ping()
    with client(server, keys.curve("alice")) as alice:
        # The allowed subscriber may join a moment after connecting; append until it hears.
        assert wait_for(
            lambda: bool(alice.append("control", [b"x"])) and bool(allowed_feed.poll(100)),
            LOG_WAIT,
        )
    assert all(not sub.poll(200) for sub in feeds)
    for sub in (*feeds, allowed_feed):
        sub.close()
    assert set(stored(server, keys)) == {b"x"}
    if name == "mallory":
        logged = f"client key {keys.z85('mallory')} is not allowed"
    assert wait_for(lambda: logged in server.log, LOG_WAIT), server.log
    assert "refused a connection" in server.log


def test_async_client_with_curve(server: ServerProcess, keys: Keys) -> None:
    async def scenario() -> list[bytes]:
        async with AsyncClient(
            server.query_endpoint,
            v2_streaming_endpoint=server.v2_streaming_endpoint,
            curve=keys.curve("alice"),
        ) as alice:
            subscription = alice.subscribe(stream="async", idle_timeout=5.0)
            await alice.append("async", [b"one", b"two"])
            live = [(await subscription.__anext__()).data for _ in range(2)]
            await subscription.close()
            assert live == [b"one", b"two"]  # through the encrypted v2 feed
            return [event.data async for event in alice.read_stream("async")]

    assert asyncio.run(scenario()) == [b"one", b"two"]


def test_async_client_read_only_may_not_append(server: ServerProcess, keys: Keys) -> None:
    async def scenario() -> None:
        async with AsyncClient(server.query_endpoint, curve=keys.curve("bob")) as bob:
            assert await bob.stream_info("nothing") is None
            with pytest.raises(Forbidden):
                await bob.append("async", [b"no"])

    asyncio.run(scenario())


def test_cli_tools_connect_with_flags_and_environment(server: ServerProcess, keys: Keys) -> None:
    endpoint = ["--query-endpoint", server.query_endpoint, "--timeout", "5"]
    flags = [
        "--curve-server-key",
        str(keys.server_public),
        "--curve-key",
        str(keys.secret("alice")),
    ]
    appended = run_rewind("append", "cli", "hello", *endpoint, *flags)
    assert appended.returncode == 0, appended.stderr
    env = {
        "REWIND_CURVE_SERVER_KEY": str(keys.server_public),
        "REWIND_CURVE_KEY": str(keys.secret("bob")),
    }
    read = run_rewind("read", "cli", *endpoint, env=env)
    assert read.returncode == 0, read.stderr
    assert read.stdout.rstrip().endswith(b"hello")
    refused = run_rewind("publish", "nope", *endpoint, env=env)
    assert refused.returncode == 1
    assert b"forbidden" in refused.stderr


def test_cli_curve_flag_errors_are_one_line(keys: Keys) -> None:
    alone = run_rewind("info", "--curve-key", str(keys.secret("alice")))
    assert alone.returncode == 2
    assert (
        alone.stderr.decode().strip() == "rewind: error: --curve-key needs --curve-server-key too"
    )
    public_as_secret = run_rewind(
        "info",
        "--curve-server-key",
        str(keys.server_public),
        "--curve-key",
        str(keys.public("alice")),
    )
    assert public_as_secret.returncode == 1
    lines = public_as_secret.stderr.decode().splitlines()
    assert len(lines) == 1 and "holds no secret key" in lines[0], lines


def test_keygen_writes_private_secret_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "new" / "keys"
    made = run_rewind("keygen", str(target), "--name", "carol", "--json")
    assert made.returncode == 0, made.stderr
    secret, public = target / "carol.key_secret", target / "carol.key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    keys = CurveKeys.from_files(public, secret)  # a usable, matching pair
    assert keys.public_key == read_public_key(public)
    assert sorted(os.listdir(target)) == ["carol.key", "carol.key_secret"]
    before = secret.read_bytes()
    again = run_rewind("keygen", str(target), "--name", "carol")
    assert again.returncode == 1
    assert len(again.stderr.decode().splitlines()) == 1
    assert b"exists already" in again.stderr
    assert secret.read_bytes() == before
    public.unlink()  # one of the two present is enough to refuse
    assert run_rewind("keygen", str(target), "--name", "carol").returncode == 1
    assert secret.read_bytes() == before and not public.exists()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--curve-secret-key", "{root}/missing.key_secret", "--curve-allowed-keys", "{allowed}"],
         "--curve-secret-key"),
        (["--curve-secret-key", "{root}/server/server.key", "--curve-allowed-keys", "{allowed}"],
         "--curve-secret-key"),
        (["--curve-secret-key", "{root}/server/server.key_secret"], "curve-secret-key"),
        (["--curve-allowed-keys", "{allowed}"], "curve-allowed-keys"),
        (["--curve-secret-key", "{root}/server/server.key_secret", "--curve-read-only-keys",
          "{root}/nowhere"], "--curve-read-only-keys"),
    ],
)  # fmt: skip
def test_serve_refuses_bad_curve_configuration(
    args: list[str], named: str, keys: Keys, tmp_path: Path
) -> None:
    filled = [arg.format(root=keys.root, allowed=keys.allowed) for arg in args]
    result = run_rewind("serve", "--storage", f"sqlite:{tmp_path / 'e.db'}", *filled, timeout=15)
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("rewind: error: ") and named in lines[0], lines
    assert not (tmp_path / "e.db").exists()


def test_curve_benchmark_row_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "curve"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "CURVE on" in line)
    assert "the same, CURVE off" in row and "x " in row
