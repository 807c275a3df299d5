"""``rewind serve`` start-up: one-line failures, configuration precedence, warnings."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from tests.integration.helpers import (
    ANY_PORT,
    Context,
    assert_one_line_failure,
    clean_environ,
    open_req,
    publish,
    query_all,
    ready_storage,
    serve_process,
)
from tests.support import ServerProcess, run_rewind


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``rewind serve`` expecting it to fail at once (bounded, in case it does not)."""
    return run_rewind("serve", *args, timeout=15, env=env)


def _loopback_endpoints() -> list[str]:
    return ["--query-bind-endpoint", ANY_PORT, "--streaming-bind-endpoint", ANY_PORT]


@pytest.fixture
def bound_endpoint(zmq_context: Context) -> Iterator[str]:
    """A TCP endpoint this test process holds, so nobody else can bind it."""
    holder = zmq_context.socket(zmq.ROUTER)
    holder.setsockopt(zmq.LINGER, 0)
    holder.bind(ANY_PORT)
    yield holder.getsockopt_string(zmq.LAST_ENDPOINT)
    holder.close()


# One-line start-up failures ---------------------------------------------------------------


def test_unknown_flag() -> None:
    """An unknown flag is a usage error naming the flag."""
    result = _serve("--no-such-flag")
    assert result.returncode == 2
    assert_one_line_failure(result, "--no-such-flag")


@pytest.mark.parametrize("url", ["foo:bar", "sqlite:", "memory:extra", "no-scheme"])
def test_bad_storage_url(url: str) -> None:
    """A storage URL with an unknown scheme or missing path is refused in one line."""
    assert_one_line_failure(_serve("--storage", url, *_loopback_endpoints()), url)


def test_storage_path_under_a_regular_file(tmp_path: Path) -> None:
    """A storage path whose directory is a regular file is refused in one line."""
    blocker = tmp_path / "plain-file"
    blocker.write_text("not a directory")
    url = f"sqlite:{blocker / 'sub' / 'events.db'}"
    assert_one_line_failure(_serve("--storage", url, *_loopback_endpoints()), str(blocker))


def test_storage_path_is_a_directory(tmp_path: Path) -> None:
    """A storage path naming a directory is refused in one line."""
    url = f"sqlite:{tmp_path}"
    assert_one_line_failure(_serve("--storage", url, *_loopback_endpoints()), str(tmp_path))


def test_file_that_is_not_sqlite(tmp_path: Path) -> None:
    """Random bytes where the database should be: refused in one line, file untouched."""
    path = tmp_path / "random.db"
    content = b"\x00garbage" + os.urandom(8192)
    path.write_bytes(content)
    assert_one_line_failure(
        _serve("--storage", f"sqlite:{path}", *_loopback_endpoints()), str(path)
    )
    assert path.read_bytes() == content


def test_sqlite_file_that_is_not_a_rewind_store(tmp_path: Path) -> None:
    """Someone else's SQLite database is refused in one line and left as it was."""
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (name TEXT)")
        db.execute("INSERT INTO customers VALUES ('alice')")
    db.close()
    assert_one_line_failure(
        _serve("--storage", f"sqlite:{path}", *_loopback_endpoints()), str(path)
    )
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM customers").fetchall() == [("alice",)]
        tables = db.execute("SELECT name FROM sqlite_schema WHERE type='table'").fetchall()
    db.close()
    assert tables == [("customers",)]


@pytest.mark.parametrize("which", ["query", "streaming"])
def test_endpoint_in_use(bound_endpoint: str, tmp_path: Path, which: str) -> None:
    """An endpoint someone else holds is refused in one line naming it, and no store
    file is left behind (sockets are bound before the store is created)."""
    flags = {"query": ANY_PORT, "streaming": ANY_PORT, which: bound_endpoint}
    store = tmp_path / "store" / "events.db"
    result = _serve(
        "--storage",
        f"sqlite:{store}",
        "--query-bind-endpoint",
        flags["query"],
        "--streaming-bind-endpoint",
        flags["streaming"],
    )
    assert_one_line_failure(result, bound_endpoint)
    assert "addr=" not in result.stderr.decode(), "the endpoint is named once"
    assert not store.parent.exists()


def test_endpoint_in_use_with_memory_storage(bound_endpoint: str) -> None:
    """The bind failure is the only line even when the storage is ``memory:``."""
    result = _serve(
        "--storage",
        "memory:",
        "--query-bind-endpoint",
        bound_endpoint,
        "--streaming-bind-endpoint",
        ANY_PORT,
    )
    assert_one_line_failure(result, bound_endpoint)


@pytest.mark.parametrize("endpoint", ["localhost:9090", "tcp://", "http://127.0.0.1:80"])
def test_malformed_endpoint(endpoint: str) -> None:
    """Text that is not a ZeroMQ endpoint is refused in one line."""
    result = _serve("--storage", "memory:", "--query-bind-endpoint", endpoint)
    assert_one_line_failure(result, endpoint)


def test_config_file_with_unknown_key(tmp_path: Path) -> None:
    """A config file key Rewind does not know is refused in one line naming it."""
    config = tmp_path / "rewind.toml"
    config.write_text('storage = "memory:"\nquery-bind-endpiont = "tcp://127.0.0.1:*"\n')
    assert_one_line_failure(_serve("--config", str(config)), "query-bind-endpiont")


def test_config_file_missing_or_invalid(tmp_path: Path) -> None:
    """A missing config file and a file that is not TOML are each one line."""
    missing = tmp_path / "missing.toml"
    assert_one_line_failure(_serve("--config", str(missing)), str(missing))
    broken = tmp_path / "broken.toml"
    broken.write_text("storage = \n[[[\n")
    assert_one_line_failure(_serve("--config", str(broken)), str(broken))


def test_bad_log_level() -> None:
    """A log level that does not exist is refused in one line naming it."""
    assert_one_line_failure(_serve("--storage", "memory:", "--log-level", "LOUD"), "LOUD")


def test_bad_values_from_environment_and_file(tmp_path: Path) -> None:
    """Bad values are refused in one line wherever they come from, naming the source."""
    result = _serve(*_loopback_endpoints(), env={"REWIND_STORAGE": "foo:bar"})
    assert_one_line_failure(result, "REWIND_STORAGE")
    config = tmp_path / "rewind.toml"
    config.write_text('log-level = "CHATTY"\n')
    assert_one_line_failure(_serve("--config", str(config)), "CHATTY")


# Configuration precedence: flags > REWIND_* environment > config file > defaults ---------


def _config_file(tmp_path: Path, **values: str) -> Path:
    path = tmp_path / "rewind.toml"
    path.write_text("".join(f'{key} = "{value}"\n' for key, value in values.items()))
    return path


@pytest.fixture
def layered_config(tmp_path: Path) -> Path:
    """A config file setting every key, with endpoints on 127.0.0.2."""
    return _config_file(
        tmp_path,
        **{
            "storage": f"sqlite:{tmp_path / 'from-file.db'}",
            "query-bind-endpoint": "tcp://127.0.0.2:*",
            "streaming-bind-endpoint": "tcp://127.0.0.2:*",
            "log-level": "DEBUG",
            "default-stream": "orders",
        },
    )


def test_defaults_apply_when_nothing_is_configured(tmp_path: Path, zmq_context: Context) -> None:
    """With no storage anywhere, the store is ``rewind-data/events.db`` in the working
    directory."""
    with serve_process(_loopback_endpoints(), cwd=tmp_path) as server:
        expected = tmp_path / "rewind-data" / "events.db"
        assert ready_storage(server) == f"sqlite:{expected}"
        publish(open_req(zmq_context, server.query_endpoint), b"default")
        assert expected.is_file()


def test_config_file_applies(layered_config: Path, tmp_path: Path, zmq_context: Context) -> None:
    """Values from ``--config`` are used when neither flags nor environment set them."""
    with serve_process(["--config", str(layered_config)]) as server:
        assert ready_storage(server) == f"sqlite:{tmp_path / 'from-file.db'}"
        assert server.query_endpoint.startswith("tcp://127.0.0.2:")
        assert server.streaming_endpoint.startswith("tcp://127.0.0.2:")
        req = open_req(zmq_context, server.query_endpoint)
        publish(req, b"configured")
        assert [data for _, data in query_all(req)] == [b"configured"]


def test_config_file_from_environment(layered_config: Path, tmp_path: Path) -> None:
    """``REWIND_CONFIG`` names the config file when ``--config`` is not given."""
    with serve_process([], env={"REWIND_CONFIG": str(layered_config)}) as server:
        assert ready_storage(server) == f"sqlite:{tmp_path / 'from-file.db'}"


def test_environment_overrides_config_file(layered_config: Path, tmp_path: Path) -> None:
    """``REWIND_*`` variables beat the config file, key by key."""
    env = {
        "REWIND_STORAGE": f"sqlite:{tmp_path / 'from-env.db'}",
        "REWIND_QUERY_BIND_ENDPOINT": "tcp://127.0.0.3:*",
    }
    with serve_process(["--config", str(layered_config)], env=env) as server:
        assert ready_storage(server) == f"sqlite:{tmp_path / 'from-env.db'}"
        assert server.query_endpoint.startswith("tcp://127.0.0.3:")
        # Not set in the environment: still from the file.
        assert server.streaming_endpoint.startswith("tcp://127.0.0.2:")


def test_flags_override_environment(layered_config: Path, tmp_path: Path) -> None:
    """Flags beat ``REWIND_*`` variables, which still beat the file where no flag is given."""
    env = {
        "REWIND_STORAGE": f"sqlite:{tmp_path / 'from-env.db'}",
        "REWIND_QUERY_BIND_ENDPOINT": "tcp://127.0.0.3:*",
        "REWIND_STREAMING_BIND_ENDPOINT": "tcp://127.0.0.3:*",
    }
    args = [
        "--config",
        str(layered_config),
        "--storage",
        f"sqlite:{tmp_path / 'from-flag.db'}",
        "--query-bind-endpoint",
        "tcp://127.0.0.4:*",
    ]
    with serve_process(args, env=env) as server:
        assert ready_storage(server) == f"sqlite:{tmp_path / 'from-flag.db'}"
        assert server.query_endpoint.startswith("tcp://127.0.0.4:")
        assert server.streaming_endpoint.startswith("tcp://127.0.0.3:")
    assert not (tmp_path / "from-env.db").exists()
    assert not (tmp_path / "from-file.db").exists()


def test_log_level_precedence(tmp_path: Path) -> None:
    """A quiet level in the file is overridden by the environment, and the environment's
    by a flag: the INFO ready line appears only when INFO wins."""
    config = _config_file(tmp_path, **{"log-level": "ERROR", "storage": "memory:"})
    base = ["--config", str(config), *_loopback_endpoints()]
    with serve_process(base, env={"REWIND_LOG_LEVEL": "INFO"}) as server:
        assert "Rewind ready" in server.log
    with serve_process([*base, "--log-level", "info"], env={"REWIND_LOG_LEVEL": "ERROR"}) as s:
        assert "Rewind ready" in s.log


def test_file_log_level_silences_info(tmp_path: Path, zmq_context: Context) -> None:
    """``log-level = "ERROR"`` in the file hides INFO lines such as the ready line."""
    config = _config_file(tmp_path, **{"log-level": "ERROR", "storage": "memory:"})
    # No wildcard port here: without a ready line the endpoint must be known in advance.
    endpoint = f"ipc://{tmp_path / 'q.sock'}"
    if len(endpoint) > 100:
        pytest.skip("temporary path too long for an ipc endpoint")
    process = subprocess.Popen(
        [
            *serve_process([]).args,
            "--config",
            str(config),
            "--query-bind-endpoint",
            endpoint,
            "--streaming-bind-endpoint",
            ANY_PORT,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=clean_environ(),
    )
    try:
        req = open_req(zmq_context, endpoint)
        publish(req, b"quietly")
        assert [data for _, data in query_all(req)] == [b"quietly"]
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert b"Rewind ready" not in stderr
    # The memory: warning is below ERROR too.
    assert stderr == b""


# Other start-up behaviour --------------------------------------------------------------


def test_memory_storage_warns_that_nothing_is_kept(zmq_context: Context) -> None:
    """``memory:`` logs a WARNING that events are not kept; SQLite logs no warning."""
    with ServerProcess("memory:") as server:
        warnings = [line for line in server.log_lines if "WARNING" in line]
        assert len(warnings) == 1, server.log
        assert "memory" in warnings[0].lower()
        assert "not" in warnings[0].lower()


def test_sqlite_storage_logs_no_warning(sqlite_server: ServerProcess) -> None:
    """A durable store starts without warnings and says it is durable."""
    assert "WARNING" not in sqlite_server.log
    assert "(durable)" in sqlite_server.log


def test_several_bind_endpoints(tmp_path: Path, zmq_context: Context) -> None:
    """Repeated ``--query-bind-endpoint`` flags serve the same store on every endpoint."""
    args = [
        "--storage",
        f"sqlite:{tmp_path / 'events.db'}",
        "--query-bind-endpoint",
        "tcp://127.0.0.1:*",
        "--query-bind-endpoint",
        "tcp://127.0.0.2:*",
        "--streaming-bind-endpoint",
        ANY_PORT,
    ]
    with serve_process(args) as server:
        line = next(line for line in server.log_lines if "Rewind ready" in line)
        endpoints = line.split("query endpoint ")[1].split(";")[0].split(", ")
        assert len(endpoints) == 2
        first, second = (open_req(zmq_context, endpoint) for endpoint in endpoints)
        publish(first, b"via first")
        publish(second, b"via second")
        assert query_all(first) == query_all(second)
        assert [data for _, data in query_all(first)] == [b"via first", b"via second"]
