"""CURVE pieces without a server: key files, configuration checks, the denial log,
access from the ZAP User-Id, and the replies a read-only append gets."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
import zmq

from rewind.client import CurveKeys
from rewind.errors import ConfigError
from rewind.keyfiles import (
    KeyFileError,
    read_key_pair,
    read_public_key,
    read_public_keys,
    write_key_pair,
)
from rewind.model import NewEvent
from rewind.protocol import gorewind, seed, v2
from rewind.server.config import load_config
from rewind.server.security import (
    READ_ONLY_REASON,
    Access,
    CurveSecurity,
    DenialLog,
    describe_handshake_failure,
    load_curve_keys,
    may_append,
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """server.key(_secret), clients/{alice,bob}.key(_secret), allowed/alice.key, ro/bob.key."""
    write_key_pair(tmp_path, "server")
    write_key_pair(tmp_path / "clients", "alice")
    write_key_pair(tmp_path / "clients", "bob")
    for directory, name in (("allowed", "alice"), ("ro", "bob")):
        (tmp_path / directory).mkdir()
        source = tmp_path / "clients" / f"{name}.key"
        (tmp_path / directory / f"{name}.key").write_bytes(source.read_bytes())
    return tmp_path


# Key files -----------------------------------------------------------------------------


def test_written_pair_reads_back_and_belongs_together(tmp_path: Path) -> None:
    public, secret = write_key_pair(tmp_path / "k", "node")
    pair = read_key_pair(secret)
    assert read_public_key(public) == pair.public
    assert zmq.curve_public(pair.secret) == pair.public
    assert pair.secret.decode() not in repr(pair)
    assert [p.name for p in sorted((tmp_path / "k").iterdir())] == ["node.key", "node.key_secret"]


@pytest.mark.parametrize("name", ["", ".hidden", "a/b"])
def test_write_refuses_unusable_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(KeyFileError, match="not a usable key name"):
        write_key_pair(tmp_path, name)


def test_write_never_replaces(tmp_path: Path) -> None:
    (tmp_path / "node.key_secret").write_text("mine")
    with pytest.raises(KeyFileError, match="exists already"):
        write_key_pair(tmp_path, "node")
    assert (tmp_path / "node.key_secret").read_text() == "mine"
    assert not (tmp_path / "node.key").exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("nothing here\n", "no public-key line"),
        ('curve\n    public-key = "short"\n', "5 characters long"),
        ('curve\n    public-key = "' + "~" * 40 + '"\n', "not Z85"),
    ],
)
def test_malformed_key_files_are_named(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "bad.key"
    path.write_text(content)
    with pytest.raises(KeyFileError, match=problem) as caught:
        read_public_key(path)
    assert str(path) in str(caught.value)


def test_a_secret_file_must_hold_a_matching_pair(tmp_path: Path) -> None:
    public, _ = write_key_pair(tmp_path, "a")
    with pytest.raises(KeyFileError, match="holds no secret key"):
        read_key_pair(public)
    _, other_secret = write_key_pair(tmp_path, "b")
    other = read_key_pair(other_secret)
    mixed = tmp_path / "mixed.key_secret"
    mixed.write_text(
        f'curve\n    public-key = "{read_public_key(public).decode()}"\n'
        f'    secret-key = "{other.secret.decode()}"\n'
    )
    with pytest.raises(KeyFileError, match="does not belong"):
        read_key_pair(mixed)
    with pytest.raises(KeyFileError, match="does not exist"):
        read_key_pair(tmp_path / "missing.key_secret")
    with pytest.raises(KeyFileError, match="not a file"):
        read_key_pair(tmp_path)


def test_a_key_directory_reads_only_public_key_files(tree: Path) -> None:
    keys = read_public_keys(tree / "clients")
    assert sorted(path.name for path in keys.values()) == ["alice.key", "bob.key"]
    (tree / "clients" / "copy.key").write_bytes((tree / "clients" / "alice.key").read_bytes())
    with pytest.raises(KeyFileError, match=r"copy\.key repeats the key of alice\.key"):
        read_public_keys(tree / "clients")
    with pytest.raises(KeyFileError, match="not a directory"):
        read_public_keys(tree / "server.key")


# Configuration ---------------------------------------------------------------------------


def test_curve_is_off_by_default() -> None:
    config = load_config()
    assert config.curve_secret_key is None
    assert config.curve_allowed_keys is None and config.curve_read_only_keys is None


def test_curve_keys_come_from_flags_environment_and_file(tree: Path) -> None:
    config_file = tree / "rewind.toml"
    config_file.write_text(f'curve-read-only-keys = "{tree / "ro"}"\n')
    config = load_config(
        flags={"curve-secret-key": str(tree / "server.key_secret")},
        environ={"REWIND_CURVE_ALLOWED_KEYS": str(tree / "allowed")},
        config_file=config_file,
    )
    assert config.curve_secret_key == tree / "server.key_secret"
    assert config.curve_allowed_keys == tree / "allowed"
    assert config.curve_read_only_keys == tree / "ro"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"curve-secret-key": "server.key"}, "--curve-secret-key: .* holds no secret key"),
        ({"curve-secret-key": "nope.key_secret"}, "--curve-secret-key: .* does not exist"),
        ({"curve-secret-key": "server.key_secret"}, "curve-secret-key: needs curve-allowed-keys"),
        ({"curve-allowed-keys": "allowed"}, "curve-allowed-keys: needs curve-secret-key"),
        ({"curve-read-only-keys": "ro"}, "curve-read-only-keys: needs curve-secret-key"),
        (
            {"curve-secret-key": "server.key_secret", "curve-allowed-keys": "nowhere"},
            "--curve-allowed-keys: .* does not exist",
        ),
        (
            {"curve-secret-key": "server.key_secret", "curve-allowed-keys": "clients"},
            None,  # a directory holding secret files too is fine: only *.key are read
        ),
    ],
)
def test_curve_configuration_is_checked_at_the_edge(
    tree: Path, flags: dict[str, str], message: str | None
) -> None:
    full = {key: str(tree / value) for key, value in flags.items()}
    if message is None:
        assert load_config(flags=full).curve_allowed_keys == tree / "clients"
        return
    with pytest.raises(ConfigError, match=message):
        load_config(flags=full)


def test_a_key_may_not_be_both_full_and_read_only(tree: Path) -> None:
    (tree / "ro" / "alice.key").write_bytes((tree / "allowed" / "alice.key").read_bytes())
    with pytest.raises(ConfigError, match=r"curve-read-only-keys: .* same key as"):
        load_curve_keys(tree / "server.key_secret", tree / "allowed", tree / "ro")


def test_empty_key_directories_are_refused(tree: Path) -> None:
    (tree / "empty").mkdir()
    with pytest.raises(ConfigError, match="no client public keys"):
        load_curve_keys(tree / "server.key_secret", tree / "empty", None)


def test_loaded_keys_carry_each_clients_access(tree: Path) -> None:
    keys = load_curve_keys(tree / "server.key_secret", tree / "allowed", tree / "ro")
    alice = read_public_key(tree / "allowed" / "alice.key")
    bob = read_public_key(tree / "ro" / "bob.key")
    assert dict(keys.clients) == {alice: Access.FULL, bob: Access.READ_ONLY}
    assert keys.count(Access.FULL) == 1 and keys.count(Access.READ_ONLY) == 1


# Access and refusals -------------------------------------------------------------------


def test_only_full_access_user_ids_may_append() -> None:
    assert may_append("rw:" + "k" * 40)
    assert not may_append("ro:" + "k" * 40)
    assert not may_append("")
    assert not may_append("anonymous")


def test_read_only_appends_get_an_error_in_their_own_dialect(tree: Path) -> None:
    keys = load_curve_keys(tree / "server.key_secret", tree / "allowed", None)
    security = CurveSecurity(keys, zmq.Context.instance())
    reader = "ro:" + "k" * 40
    assert security.refusal(seed.Publish(b"x"), reader) == seed.encode_error(READ_ONLY_REASON)
    assert security.refusal(gorewind.Publish("s", b"x"), reader) == gorewind.encode_error(
        READ_ONLY_REASON
    )
    append = v2.Append(7, "s", (NewEvent(data=b"x", event_id=uuid.uuid4()),))
    reply = v2.decode_reply(security.refusal(append, reader) or [])
    assert isinstance(reply, v2.ErrorReply)
    assert (reply.request_id, reply.code) == (7, v2.ErrorCode.FORBIDDEN)
    assert security.refusal(append, "rw:" + "k" * 40) is None
    assert security.refusal(v2.Ping(3), reader) is None
    assert security.refusal(seed.Query(None, None), reader) is None


def test_handshake_failures_are_explained() -> None:
    mismatch = int(zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
    crypto = int(zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)
    protocol = int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
    assert describe_handshake_failure(protocol, mismatch) == "the client does not use CURVE"
    assert "another server public key" in (describe_handshake_failure(protocol, crypto) or "")
    assert describe_handshake_failure(int(zmq.EVENT_HANDSHAKE_FAILED_AUTH), 400) is None
    assert describe_handshake_failure(int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL), 0) is None
    odd = int(zmq.PROTOCOL_ERROR_ZMTP_UNEXPECTED_COMMAND)
    assert "UNEXPECTED_COMMAND" in (describe_handshake_failure(protocol, odd) or "")


def test_denial_log_bursts_then_counts(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    denials = DenialLog(
        logging.getLogger("test.denials"), interval=60.0, burst=2, clock=lambda: now[0]
    )
    with caplog.at_level(logging.WARNING, logger="test.denials"):
        logged = [denials.denied("mallory", f"refused {n}") for n in range(5)]
        assert logged == [True, True, False, False, False]
        assert denials.denied("eve", "refused eve")  # another party has its own budget
        now[0] = 61.0
        assert denials.denied("mallory", "refused again")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "refused 0",
        "refused 1",
        "refused eve",
        "refused again (3 more like this went unlogged before)",
    ]
    assert all(record.levelno == logging.WARNING for record in caplog.records)


# Client keys ---------------------------------------------------------------------------


def test_client_keys_are_checked_and_keep_the_secret_out_of_repr(tree: Path) -> None:
    keys = CurveKeys.from_files(tree / "server.key", tree / "clients" / "alice.key_secret")
    secret = read_key_pair(tree / "clients" / "alice.key_secret").secret
    assert secret.decode() not in repr(keys)
    with pytest.raises(ValueError, match="does not belong"):
        CurveKeys(keys.server_key, keys.server_key, secret)
    with pytest.raises(ValueError, match="server key is 3 characters"):
        CurveKeys(b"abc", keys.public_key, secret)
    with pytest.raises(KeyFileError, match="holds no secret key"):
        CurveKeys.from_files(tree / "server.key", tree / "clients" / "alice.key")
