"""The Rewind server: configuration, lifecycle and the ZeroMQ loop."""

from rewind.server.app import Server, StartupError
from rewind.server.config import ServerConfig, load_config

__all__ = ["Server", "ServerConfig", "StartupError", "load_config"]
