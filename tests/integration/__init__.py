"""End-to-end tests against real ``rewind serve`` processes."""
