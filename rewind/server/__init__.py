"""The Rewind server: configuration, lifecycle and the ZeroMQ loop."""

from rewind.server.app import Server
from rewind.server.config import ServerConfig, load_config
from rewind.server.sockets import StartupError

__all__ = ["Server", "ServerConfig", "StartupError", "load_config"]
