"""CURVE authentication and encryption for every server socket.

When ``curve-secret-key`` is set, every socket the server binds is a CURVE
server, and a ZAP handler (pyzmq's :class:`~zmq.auth.thread.ThreadAuthenticator`,
in its own thread) admits only the client public keys found in the
configured directories. The User-Id it hands back for an admitted peer says
what the key may do, ``rw:<key>`` or ``ro:<key>``; ZeroMQ attaches it to
every message from that peer, which is how the request loop tells a
read-only client's append from anyone else's (:meth:`CurveSecurity.refusal`).

Refused connections never reach the server loop. Each is logged: unknown
keys by the ZAP handler, which sees them; clients without CURVE and clients
that encrypted for another server key by a socket monitor thread, since
those handshakes fail before ZAP is asked. A client that keeps retrying is
reported a few times a minute, with a count of the rest, so it cannot flood
the log.
"""

from __future__ import annotations

import logging
import queue
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

from rewind.errors import ConfigError
from rewind.keyfiles import KeyFileError, KeyPair, read_key_pair, read_public_keys
from rewind.protocol import gorewind, seed, v2

if TYPE_CHECKING:
    from rewind.server.config import ServerConfig

log = logging.getLogger("rewind.server.security")

DENIAL_REPORT_INTERVAL = 60.0
DENIAL_REPORT_BURST = 5
"""At most this many log lines about one refused party per interval."""
_MAX_TRACKED_DENIALS = 4096
WATCH_INTERVAL_S = 0.25
"""How often the monitor thread looks for new sockets and for a stop request."""

READ_ONLY_REASON = "forbidden: this client key may read and subscribe but not append"


class Access(Enum):
    """What an admitted client key may do; the value prefixes its ZAP User-Id."""

    FULL = "rw"
    READ_ONLY = "ro"


def may_append(user_id: str) -> bool:
    """Whether the peer with this ZAP User-Id may append."""
    return user_id.startswith(Access.FULL.value + ":")


@dataclass(frozen=True, slots=True)
class CurveKeys:
    """The server's key pair and the client keys it admits, each with its access."""

    server: KeyPair
    clients: Mapping[bytes, Access]
    secret_key_file: Path

    def count(self, access: Access) -> int:
        """How many client keys have ``access``."""
        return sum(1 for granted in self.clients.values() if granted is access)


def load_curve_keys(secret_key: Path, allowed: Path | None, read_only: Path | None) -> CurveKeys:
    """Read and cross-check every key file; raise :class:`ConfigError` naming the key."""
    try:
        server = read_key_pair(secret_key)
    except KeyFileError as exc:
        raise ConfigError(f"curve-secret-key: {exc}") from None
    clients: dict[bytes, Access] = {}
    found: dict[bytes, Path] = {}
    for key_name, directory, access in (
        ("curve-allowed-keys", allowed, Access.FULL),
        ("curve-read-only-keys", read_only, Access.READ_ONLY),
    ):
        if directory is None:
            continue
        try:
            keys = read_public_keys(directory)
        except KeyFileError as exc:
            raise ConfigError(f"{key_name}: {exc}") from None
        for key, path in keys.items():
            if key in found:
                raise ConfigError(
                    f"{key_name}: {path} holds the same key as {found[key]}; "
                    "a key is either full-access or read-only"
                )
            found[key] = path
            clients[key] = access
    if not clients:
        raise ConfigError(
            "curve-allowed-keys/curve-read-only-keys: no client public keys (*.key files) "
            "in the key directories, so no client could connect"
        )
    return CurveKeys(server, clients, secret_key)


def keys_from_config(config: ServerConfig) -> CurveKeys | None:
    """The CURVE keys a configuration names, or ``None`` when CURVE is off."""
    if config.curve_secret_key is None:
        return None
    return load_curve_keys(
        config.curve_secret_key, config.curve_allowed_keys, config.curve_read_only_keys
    )


@dataclass(slots=True)
class _Window:
    started: float
    logged: int = 0
    unlogged: int = 0


class DenialLog:
    """Logs refusals at WARNING: each one, up to a burst per refused party and interval.

    A client that keeps retrying (ZeroMQ reconnects every 100 ms by default)
    would otherwise fill the log. What goes unlogged is counted and the
    count added to the party's next line. Thread-safe: the ZAP thread, the
    monitor thread and the request loop all report here.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = DENIAL_REPORT_INTERVAL,
        burst: int = DENIAL_REPORT_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._interval = interval
        self._burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}

    def denied(self, party: str, message: str) -> bool:
        """Report a refusal of ``party``; return whether a line was logged."""
        with self._lock:
            now = self._clock()
            window = self._windows.get(party)
            if window is None or now - window.started >= self._interval:
                if window is None and len(self._windows) >= _MAX_TRACKED_DENIALS:
                    # Very many distinct parties: forget them rather than grow without bound.
                    self._windows.clear()
                unlogged = 0 if window is None else window.unlogged
                window = self._windows[party] = _Window(now)
            else:
                unlogged = 0
            if window.logged >= self._burst:
                window.unlogged += 1
                return False
            window.logged += 1
        if unlogged:
            message += f" ({unlogged} more like this went unlogged before)"
        self._log.warning("%s", message)
        return True


class AccessAuthenticator(ThreadAuthenticator):
    """ZAP in a thread: admits known client keys and names their access in the User-Id."""

    def __init__(
        self, context: zmq.Context[Any], clients: Mapping[bytes, Access], denials: DenialLog
    ) -> None:
        super().__init__(context, log=logging.getLogger("rewind.server.zap"))
        self._clients = dict(clients)
        self._denials = denials
        self._peer = "an unknown address"
        self.configure_curve_callback("*", credentials_provider=self)

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        """Answer one ZAP request, remembering the peer's address for the log."""
        if len(msg) > 3:
            self._peer = msg[3].decode("ascii", errors="replace") or "an unknown address"
        await super().handle_zap_message(msg)

    def callback(self, domain: str, key: bytes) -> bool:
        """The credentials check ZAP calls with the client's Z85 public key."""
        if key in self._clients:
            return True
        text = key.decode("ascii", errors="replace")
        self._denials.denied(
            "key:" + text,
            f"refused a connection from {self._peer}: client key {text} is not allowed",
        )
        return False

    def curve_user_id(self, client_public_key: bytes) -> str:
        """``rw:<key>`` or ``ro:<key>``: the User-Id every message of the peer carries."""
        key = z85.encode(client_public_key)
        return f"{self._clients[key].value}:{key.decode('ascii')}"


_HANDSHAKE_FAILURES = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)

_PROTOCOL_REASONS = {
    int(zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH): "the client does not use CURVE",
    int(zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC): (
        "the client's handshake does not decrypt (it uses another server public key)"
    ),
}


def describe_handshake_failure(event: int, value: int) -> str | None:
    """Why a monitored handshake was refused; ``None`` if there is nothing to report.

    Refusals by key are reported by the ZAP handler, which knows the key. A
    handshake that fails without detail is a peer that went away half-way
    (a client giving up, a port probe): nothing was refused.
    """
    if event != zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return None
    known = _PROTOCOL_REASONS.get(value)
    if known is not None:
        return known
    try:
        name = zmq.Event(value).name or hex(value)
    except ValueError:
        name = hex(value)
    return f"the client broke the handshake protocol ({name})"


class _Watcher(threading.Thread):
    """Logs the handshake failures the monitor sockets report."""

    def __init__(self, denials: DenialLog) -> None:
        super().__init__(name="rewind-curve-monitor", daemon=True)
        self._denials = denials
        self._incoming: queue.SimpleQueue[zmq.Socket[bytes]] = queue.SimpleQueue()
        self._stopping = threading.Event()

    def add(self, monitor: zmq.Socket[bytes]) -> None:
        """Watch ``monitor`` (handed over to this thread, which closes it)."""
        self._incoming.put(monitor)

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join()

    def run(self) -> None:
        poller = zmq.Poller()
        monitors: list[zmq.Socket[bytes]] = []
        try:
            while not self._stopping.is_set():
                while not self._incoming.empty():
                    monitors.append(self._incoming.get())
                    poller.register(monitors[-1], zmq.POLLIN)
                for monitor, _ in poller.poll(int(WATCH_INTERVAL_S * 1000)):
                    self._report(monitor)
        finally:
            while not self._incoming.empty():
                monitors.append(self._incoming.get())
            for monitor in monitors:
                monitor.close(linger=0)

    def _report(self, monitor: zmq.Socket[bytes]) -> None:
        message = recv_monitor_message(monitor, zmq.NOBLOCK)
        reason = describe_handshake_failure(int(message["event"]), int(message["value"]))
        if reason is None:
            log.debug("handshake on %r ended: %r", message["endpoint"], message["event"])
            return
        endpoint = bytes(message["endpoint"]).decode("utf-8", errors="replace")
        self._denials.denied(
            f"{endpoint}:{reason}",
            f"refused a connection to {endpoint}: {reason}",
        )


class CurveSecurity:
    """CURVE for the server's sockets: start it, secure each socket before binding, stop it."""

    def __init__(self, keys: CurveKeys, context: zmq.Context[Any]) -> None:
        self.keys = keys
        self._context = context
        self._denials = DenialLog(log)
        self._authenticator: AccessAuthenticator | None = None
        self._watcher: _Watcher | None = None

    def start(self) -> None:
        """Start the ZAP handler (and the monitor thread).

        Must come before any socket is bound: a CURVE socket whose context has
        no ZAP handler admits every client key.
        """
        self._warn_if_exposed()
        self._authenticator = AccessAuthenticator(self._context, self.keys.clients, self._denials)
        self._authenticator.start()
        self._watcher = _Watcher(self._denials)
        self._watcher.start()
        log.info(
            "CURVE on: server public key %s; %d full-access and %d read-only client keys",
            self.keys.server.public.decode("ascii"),
            self.keys.count(Access.FULL),
            self.keys.count(Access.READ_ONLY),
        )

    def secure(self, sock: zmq.Socket[bytes]) -> None:
        """Make ``sock`` a CURVE server and log its refused handshakes; call before binding."""
        assert self._watcher is not None, "start() first"
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.keys.server.secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.keys.server.public)
        self._watcher.add(sock.get_monitor_socket(_HANDSHAKE_FAILURES))

    def refusal(self, request: object, user_id: str) -> list[bytes] | None:
        """The ERROR reply if ``request`` is an append the peer may not make, else ``None``."""
        if may_append(user_id):
            return None
        if isinstance(request, seed.Publish):
            reply = seed.encode_error(READ_ONLY_REASON)
        elif isinstance(request, gorewind.Publish):
            reply = gorewind.encode_error(READ_ONLY_REASON)
        elif isinstance(request, v2.Append):
            reply = v2.encode_error(request.request_id, v2.ErrorCode.FORBIDDEN, READ_ONLY_REASON)
        else:
            return None
        key = user_id.partition(":")[2] or "(none)"
        self._denials.denied("append:" + key, f"refused an append from read-only client key {key}")
        return reply

    def stop(self) -> None:
        """Stop the monitor thread and the ZAP handler. Safe to call more than once."""
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None

    def _warn_if_exposed(self) -> None:
        path = self.keys.secret_key_file
        try:
            mode = path.stat().st_mode
        except OSError:
            return
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning(
                "curve-secret-key %s can be read by other users (mode %s); chmod 600 it",
                path,
                oct(stat.S_IMODE(mode)),
            )
