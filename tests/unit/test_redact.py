"""``redact``: a URL's password never reaches an error message, a log line or the terminal."""

from __future__ import annotations

import pytest

from redisvl_llmrouter.errors import redact, redact_url


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


@pytest.mark.parametrize(
    "text",
    ["redis://:Zz9/SecretPw@127.0.0.1:7699", "redis//admin:Zz9SecretPw@127.0.0.1:7699", "rediss://u:a/b/SecretPw@h"],
)
def test_a_password_with_a_slash_or_a_url_missing_its_colon_is_masked_too(text):
    assert "SecretPw" not in redact(text) and "***@" in redact(text)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://alice:PW@host:6379/0", "redis://alice:***@host:6379/0"),
        ("redis//admin:PW@host", "redis//admin:***@host"),
        ("redis://:P/W#?@host", "redis://:***@host"),
        ("PW@host", "***@host"),
        ("redis://host:6379", "redis://host:6379"),
    ],
)
def test_redact_url_masks_the_userinfo_of_one_url_however_malformed(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:77x8?password=Zz9Secret", "redis://h:1?db=x&password=Zz9Secret&ssl=1"]
)
def test_a_password_in_the_query_string_is_masked(url):
    for shown in (redact(url), redact_url(url), redact(f"Invalid Redis URL '{url}': bad port")):
        assert "Zz9Secret" not in shown and "password=***" in shown
