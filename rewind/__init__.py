"""Rewind: an event store server for CQRS and event sourcing, speaking ZeroMQ."""

__version__ = "0.1.0"
__all__ = ["__version__"]
