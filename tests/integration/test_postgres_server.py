"""Real ``rewind serve --storage postgresql://…`` processes.

A selection of the v2 client tests runs unchanged against a server on
PostgreSQL; then what only this backend has: several servers sharing one
log, start-up refusals, and PostgreSQL going away while appends arrive.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from rewind.client import Client, StorageFailure
from tests import postgres_support
from tests.integration import test_v2_client as v2_client_tests
from tests.integration import test_v2_subscribe as v2_subscribe_tests
from tests.integration.helpers import (
    ANY_PORT,
    Context,
    assert_one_line_failure,
    open_req,
    publish,
    query_all,
    ready_storage,
)
from tests.postgres_support import sql, store_url
from tests.support import ServerProcess, run_rewind, skip_or_fail


@pytest.fixture(scope="module")
def module_schema() -> Iterator[str]:
    with postgres_support.fresh_schema("srv") as schema:
        yield schema


@pytest.fixture(scope="module")
def memory_server(module_schema: str) -> Iterator[ServerProcess]:
    """The server the borrowed tests ask for by this name: here, one on PostgreSQL."""
    with ServerProcess(store_url(module_schema)) as process:
        yield process


@pytest.fixture
def client(memory_server: ServerProcess) -> Iterator[Client]:
    with _client(memory_server) as connected:
        yield connected


def _client(server: ServerProcess, **options: float) -> Client:
    return Client(
        server.query_endpoint,
        server.streaming_endpoint,
        v2_streaming_endpoint=server.v2_streaming_endpoint,
        **options,  # type: ignore[arg-type]
    )


# The same tests as on the memory server, collected here against PostgreSQL.
test_append_with_each_expected_version_kind = (
    v2_client_tests.test_append_with_each_expected_version_kind
)
test_append_result_and_recorded_fields = v2_client_tests.test_append_result_and_recorded_fields
test_multi_event_append_is_atomic = v2_client_tests.test_multi_event_append_is_atomic
test_idempotent_retry_with_the_same_ids = v2_client_tests.test_idempotent_retry_with_the_same_ids
test_id_reused_for_other_content_is_a_conflict = (
    v2_client_tests.test_id_reused_for_other_content_is_a_conflict
)
test_read_stream_both_directions = v2_client_tests.test_read_stream_both_directions
test_read_all_both_directions_and_filters = (
    v2_client_tests.test_read_all_both_directions_and_filters
)
test_read_all_since_a_time = v2_client_tests.test_read_all_since_a_time
test_large_read_is_streamed_in_small_batches = (
    v2_client_tests.test_large_read_is_streamed_in_small_batches
)
test_stream_info = v2_client_tests.test_stream_info
test_history_then_live_without_gap_or_duplicate = (
    v2_subscribe_tests.test_history_then_live_without_gap_or_duplicate
)
test_category_subscription = v2_subscribe_tests.test_category_subscription


def test_info_and_the_ready_line_name_a_durable_postgresql_store(
    client: Client, memory_server: ServerProcess, module_schema: str
) -> None:
    info = client.server_info()
    assert (info.storage_kind, info.durable) == ("postgresql", True)
    assert ready_storage(memory_server) == store_url(module_schema)
    assert f"schema '{module_schema}': synchronous_commit=on" in memory_server.log
    assert "(durable)" in memory_server.log


def test_seed_publish_and_query(zmq_context: Context) -> None:
    with (
        postgres_support.fresh_schema("seed") as schema,
        ServerProcess(store_url(schema)) as server,
    ):
        sock = open_req(zmq_context, server.query_endpoint)
        for data in (b"one", b"two", b"three"):
            publish(sock, data)
        assert [data for _, data in query_all(sock)] == [b"one", b"two", b"three"]
        sock.close()


def test_events_survive_a_restart_of_the_server() -> None:
    with (
        postgres_support.fresh_schema("restart") as schema,
        ServerProcess(store_url(schema)) as server,
    ):
        with _client(server) as client:
            first = client.append("s", [b"a", b"b"])
        server.kill()  # no clean shutdown: the acknowledgement alone must be enough
        server.restart()
        with _client(server) as client:
            assert [e.data for e in client.read_all()] == [b"a", b"b"]
            assert client.append("s", [b"c"]).first_position == first.last_position + 1


def test_two_servers_share_one_gap_free_log() -> None:
    """Writers on two servers race; both serve the same log, with every position once."""
    with (
        postgres_support.fresh_schema("two") as schema,
        ServerProcess(store_url(schema)) as left,
        ServerProcess(store_url(schema)) as right,
    ):
        failures: list[BaseException] = []

        def write(server: ServerProcess, tag: str) -> None:
            try:
                with _client(server) as client:
                    for index in range(60):
                        client.append(f"{tag}-{index % 3}", [f"{tag}{index}".encode()] * 3)
                        client.append("shared", [f"{tag}{index}".encode()])
            except BaseException as exc:
                failures.append(exc)

        writers = [
            threading.Thread(target=write, args=(server, tag))
            for server, tag in ((left, "l"), (right, "r"), (left, "L"), (right, "R"))
        ]
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join(60)
        assert failures == []
        with _client(left) as on_left, _client(right) as on_right:
            seen_left, seen_right = list(on_left.read_all()), list(on_right.read_all())
            shared = list(on_right.read_stream("shared"))
        assert seen_left == seen_right
        assert [e.position for e in seen_left] == list(range(1, 4 * 60 * 4 + 1))
        assert [e.version for e in shared] == list(range(4 * 60))


# Start-up refusals --------------------------------------------------------------------------


def _serve(url: str) -> subprocess.CompletedProcess[bytes]:
    return run_rewind(
        "serve",
        "--storage",
        url,
        "--query-bind-endpoint",
        ANY_PORT,
        "--streaming-bind-endpoint",
        ANY_PORT,
        "--v2-streaming-bind-endpoint",
        ANY_PORT,
        timeout=30,
    )


def test_an_unreachable_database_stops_start_up_in_one_line() -> None:
    postgres_support.require_postgres()
    url = "postgresql://postgres:hunter2x@127.0.0.1:1/test?connect_timeout=2"
    line = assert_one_line_failure(_serve(url), "cannot connect to PostgreSQL", "port 1 failed")
    assert "hunter2x" not in line


def test_commits_that_are_not_synchronous_stop_start_up_in_one_line() -> None:
    with postgres_support.fresh_schema("async") as schema:
        url = store_url(schema, options="-c%20synchronous_commit%3Doff")
        assert_one_line_failure(_serve(url), "synchronous_commit is 'off'", "ALTER ROLE")


# PostgreSQL going away ----------------------------------------------------------------------


class Appender(threading.Thread):
    """Appends one event at a time until told to stop, noting what was acknowledged."""

    def __init__(self, server: ServerProcess) -> None:
        super().__init__()
        self.server = server
        self.acknowledged: list[tuple[int, bytes]] = []
        self.refusals: list[str] = []
        self.other: list[BaseException] = []
        self.done = threading.Event()

    def run(self) -> None:
        with _client(self.server, timeout=10.0) as client:
            index = 0
            while not self.done.is_set():
                index += 1
                data = f"event-{index}".encode()
                try:
                    result = client.append("s", [data])
                except StorageFailure as exc:
                    self.refusals.append(str(exc))
                    time.sleep(0.01)
                except BaseException as exc:
                    self.other.append(exc)
                    return
                else:
                    self.acknowledged.append((result.first_position, data))

    def acknowledged_since(self, count: int, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return len(self.acknowledged) >= count


def _check_nothing_acknowledged_was_lost(server: ServerProcess, appender: Appender) -> None:
    assert appender.other == []
    with _client(server) as client:
        stored = [(e.position, e.data) for e in client.read_all()]
    assert [position for position, _ in stored] == list(range(1, len(stored) + 1))
    assert set(appender.acknowledged) <= set(stored)


@pytest.fixture
def role() -> Iterator[str]:
    """A login role of the test's own, whose logins can be refused to fake an outage."""
    with postgres_support.login_role() as name:
        yield name


def test_appends_fail_while_postgresql_is_unreachable_and_succeed_after(role: str) -> None:
    """The server's sessions are ended and new ones refused for a while: appends meanwhile
    get an ERROR, later ones succeed, and everything acknowledged is there."""
    url = store_url(role, user=role, application_name=role)
    with ServerProcess(url) as server:
        appender = Appender(server)
        appender.start()
        try:
            assert appender.acknowledged_since(20)
            sql(f'ALTER ROLE "{role}" NOLOGIN')
            sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (role,),
            )
            before = len(appender.acknowledged)
            deadline = time.monotonic() + 10
            while len(appender.refusals) < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            # Acknowledged meanwhile: only appends that had passed COMMIT already.
            assert len(appender.acknowledged) <= before + 1
            sql(f'ALTER ROLE "{role}" LOGIN')
            assert appender.acknowledged_since(len(appender.acknowledged) + 20)
        finally:
            appender.done.set()
            appender.join(30)
            sql(f'ALTER ROLE "{role}" LOGIN')
        assert len(appender.refusals) >= 5
        # An append cut off in COMMIT cannot be settled while logins are refused.
        unknown = [reason for reason in appender.refusals if "during COMMIT" in reason]
        assert len(unknown) <= 1
        assert all("not permitted to log in" in reason for reason in appender.refusals), (
            appender.refusals
        )
        _check_nothing_acknowledged_was_lost(server, appender)
        assert "commit of 1 appends failed" in server.log


def _pg_ctlcluster() -> list[str]:
    """The command that controls the local cluster, or skip when there is none to restart."""
    command = shutil.which("pg_ctlcluster")
    versions = os.listdir("/etc/postgresql") if os.path.isdir("/etc/postgresql") else []
    if command is None or len(versions) != 1 or os.geteuid() != 0:
        skip_or_fail("restarting PostgreSQL needs root and one local pg_ctlcluster cluster")
    if postgres_support.base_url() != postgres_support.DEFAULT_URL:
        pytest.skip("the test database is not the local cluster this test could restart")
    return [command, "--skip-systemctl-redirect", versions[0], "main"]


@pytest.mark.timeout(120)
def test_appends_across_a_real_restart_of_postgresql() -> None:
    """PostgreSQL restarts under load (a few seconds): appends meanwhile get an ERROR,
    the server reconnects by itself, nothing acknowledged is lost."""
    with postgres_support.fresh_schema("pgrestart") as schema:
        control = _pg_ctlcluster()
        with ServerProcess(store_url(schema)) as server:
            appender = Appender(server)
            appender.start()
            try:
                assert appender.acknowledged_since(20)
                subprocess.run([*control, "restart"], check=True, capture_output=True, timeout=60)
                count = len(appender.acknowledged)
                assert appender.acknowledged_since(count + 20, timeout=30)
            finally:
                appender.done.set()
                appender.join(30)
                subprocess.run([*control, "start"], capture_output=True, timeout=60)
            assert appender.refusals  # the restart took a while
            _check_nothing_acknowledged_was_lost(server, appender)
