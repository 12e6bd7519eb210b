"""What the embedder sees: the documented window and the last user message."""

from __future__ import annotations

import pytest

from redisvl_llmrouter import InvalidQueryError, TextWindow
from redisvl_llmrouter.request_text import ELLIPSIS, messages_text, prompt_text, routing_text


def test_short_texts_are_embedded_whole():
    assert routing_text("  what is 2+2?  ") == "what is 2+2?"


def test_long_texts_keep_their_head_and_tail():
    text = "PREAMBLE " * 200 + "the actual question?"
    windowed = routing_text(text, TextWindow(max_chars=100, head_chars=20))
    head, tail = windowed.split(ELLIPSIS)
    assert text.startswith(head) and len(head) <= 20
    assert windowed.endswith("the actual question?") and len(tail) <= 80


def test_a_window_without_head_keeps_only_the_tail():
    assert routing_text("x" * 50 + "END", TextWindow(max_chars=20, head_chars=0)) == ("x" * 17 + "END")


def test_head_must_fit_in_the_window():
    with pytest.raises(ValueError):
        TextWindow(max_chars=100, head_chars=100)


def test_the_last_user_message_is_the_request():
    messages = [
        {"role": "system", "content": "You are a helpful assistant. " * 50},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello!"},
        {"role": "user", "content": [{"type": "text", "text": "what is in"}, {"type": "image_url", "image_url": {}},
                                     {"type": "text", "text": "this picture?"}]},
    ]  # fmt: skip
    assert messages_text(messages) == "what is in\nthis picture?"
    assert "helpful assistant" in prompt_text(messages)


def test_without_a_user_message_the_last_text_counts():
    assert messages_text([{"role": "system", "content": "summarise the weather"}]) == "summarise the weather"


@pytest.mark.parametrize(
    "messages",
    [[], "hello", [{"content": "no role"}], [{"role": "user", "content": ""}], [{"role": "user", "content": 42}]],
)
def test_unroutable_messages_are_clear_errors(messages):
    with pytest.raises(InvalidQueryError):
        messages_text(messages)


def test_a_text_part_whose_text_is_no_string_is_named_not_taken_for_no_text():
    with pytest.raises(InvalidQueryError, match="a text part's 'text' must be a string, got int"):
        messages_text([{"role": "user", "content": [{"type": "text", "text": 5}]}])


def test_the_same_text_key_ignores_what_the_uncased_embedder_does_not_see_and_nothing_else():
    from redisvl_llmrouter.request_text import same_text_key

    assert same_text_key("What is 0.6c. How much?") == same_text_key("what  is 0.6c . HOW much ?\n")
    assert same_text_key("Café naïve") == same_text_key("cafe naive")
    assert same_text_key("snake_case") == same_text_key("snake _ case")  # "_" is punctuation to BERT
    assert same_text_key("how much") != same_text_key("how many")
    assert same_text_key("ab") != same_text_key("a b")
