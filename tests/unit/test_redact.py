"""``redact``: a URL's password never reaches an error message, a log line or the terminal."""

from __future__ import annotations

import pytest

from redisvl_llmrouter.errors import redact


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("redis://alice:PW@host:6379/0", "redis://alice:***@host:6379/0"),
        ("rediss://:PW@host", "rediss://:***@host"),
        ("a p@ss:w@rd: redis://u:p@ss:w@rd@host/1", "a p@ss:w@rd: redis://u:***@host/1"),
        ("unrecognized arguments: --x https://k:PW@api.example/v1 and redis://b:PW2@h", None),
    ],
)
def test_the_password_of_every_url_is_replaced(text, shown):
    out = redact(text)
    assert "PW" not in out and "p@ss:w@rd@" not in out
    if shown is not None:
        assert out == shown


@pytest.mark.parametrize("text", ["redis://host:6379/0", "redis://alice@host", "mail me at a:b@c", "host:1 x@y"])
def test_text_without_a_url_password_is_unchanged(text):
    assert redact(text) == text
