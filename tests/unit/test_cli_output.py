"""The CLI's line format: one event per line, readable back exactly."""

from __future__ import annotations

import json

import pytest

from rewind.cli import _escape, _format


@pytest.mark.parametrize(
    ("data", "rendered"),
    [
        (b"plain text", "plain text"),
        ("café".encode(), "café"),
        (b"two\nlines", "two\\nlines"),
        (b"tab\there\r", "tab\\there\\r"),
        (b"a literal \\n", "a literal \\\\n"),
        (b"\xff\x00", "\\xff\x00"),
    ],
)
def test_data_renders_on_one_unambiguous_line(data: bytes, rendered: str) -> None:
    assert _escape(data) == rendered
    assert "\n" not in _escape(data)


def test_text_format_is_id_tab_data() -> None:
    assert _format("id-1", b"x\ny", as_json=False) == "id-1\tx\\ny"


def test_json_format_uses_base64_only_for_non_utf8() -> None:
    assert json.loads(_format("id-1", "é".encode(), as_json=True)) == {"id": "id-1", "data": "é"}
    assert json.loads(_format("id-2", b"\xff", as_json=True)) == {
        "id": "id-2",
        "data_base64": "/w==",
    }
