"""Telling the three dialects of the request socket apart.

One ROUTER endpoint serves the seed protocol, the Gorewind dialect and
Rewind v2. The body of a request (the frames after the envelope) says which:

* a first frame ``RWD`` + digits is Rewind v2 (any version: the v2 parser
  answers versions it does not speak with ``UNSUPPORTED_VERSION``);
* ``PUBLISH`` with 3 frames or ``QUERY`` with 4 is Gorewind;
* everything else is the seed protocol, whose parser also answers every
  malformed request, so old clients see exactly the errors they always did.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from rewind.protocol import gorewind, seed, v2


class Dialect(Enum):
    """The protocol a request body is written in."""

    SEED = "seed"
    GOREWIND = "gorewind"
    V2 = "RWD2"


PROTOCOLS = tuple(dialect.value for dialect in (Dialect.V2, Dialect.GOREWIND, Dialect.SEED))
"""Names of the protocols served on the request socket, as INFO lists them."""


def classify(body: Sequence[bytes]) -> Dialect:
    """The dialect of a request body, by its first frame and frame count."""
    if not body:
        return Dialect.SEED
    first = body[0]
    # The prefix first: it spares most requests of other dialects a regex match.
    if first.startswith(b"RWD") and v2.is_marker(first):
        return Dialect.V2
    # Gorewind requests have 3 or 4 frames: a seed PUBLISH (2) skips the call.
    if len(body) > 2 and gorewind.is_request(body):
        return Dialect.GOREWIND
    return Dialect.SEED


def is_command(frame: bytes) -> bool:
    """Whether a frame can start a request body (for ``split_envelope``).

    A DEALER that sends no delimiter is recognised by the first frame of its
    body: a seed/Gorewind command word or a v2 marker.
    """
    return seed.is_command(frame) or v2.is_marker(frame)


def parse_request(
    body: Sequence[bytes],
) -> seed.SeedRequest | gorewind.GorewindRequest | v2.Request | v2.BadRequest:
    """Parse a body with its dialect's parser; never raises.

    Each dialect has its own ``BadRequest`` class, so the caller knows which
    error encoder answers a refused request.
    """
    dialect = classify(body)
    if dialect is Dialect.V2:
        return v2.parse_request(body)
    if dialect is Dialect.GOREWIND:
        return gorewind.parse_request(body)
    return seed.parse_request(body)
