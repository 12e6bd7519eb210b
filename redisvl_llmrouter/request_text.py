"""What the embedder sees of a request: one documented rule for routing, learning and evaluation.

The embedding model reads at most 256 word pieces. A chat request is a list of messages where
the last user message says what is wanted now, often after a long system prompt or pasted
context; benchmark prompts open with the same few-shot block and end with the question. An
embedding of the whole text would see only the shared start, and every request would look alike.

So the text routed is:

1. for chat messages, the content of the **last user message** (text parts of multimodal
   content joined; images carry no text to embed);
2. if longer than ``window.max_chars``, its **head and tail**: the first ``head_chars``
   characters and the last ``max_chars - head_chars``, joined by `` … `` (see
   :class:`~redisvl_llmrouter.schema.TextWindow`).

Pure functions; the router, the learning calls, the evaluation and the gateway all use them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from redisvl_llmrouter.errors import InvalidQueryError
from redisvl_llmrouter.schema import TextWindow

__all__ = ["ELLIPSIS", "NO_TEXT", "messages_text", "prompt_text", "routing_text", "same_text_key"]

ELLIPSIS = " … "
#: The error message of a request whose messages have no text at all (images or audio only).
NO_TEXT = "No message has text content to route on."
#: Words and single punctuation marks, as BERT's pre-tokenizer splits text (``_`` is punctuation to it).
_PIECES = re.compile(r"[^\W_]+|[^\w\s]|_")
_ACCENTS = re.compile(r"[\u0300-\u036f]")


def same_text_key(text: str) -> str:
    """A key two prompts share when the packaged (uncased) embedder cannot tell them apart: lowercased,
    accents stripped, split into words and punctuation marks, so that case, spacing and spaces around
    punctuation do not count. The evaluation keeps prompts of one key in one fold, and says when
    training data holds a test prompt under another spelling."""
    plain = _ACCENTS.sub("", unicodedata.normalize("NFD", text.lower()))
    return " ".join(_PIECES.findall(plain))


def routing_text(text: str, window: TextWindow | None = None) -> str:
    """The part of ``text`` that is embedded: all of it, or its head and tail when longer than the window."""
    window = window or TextWindow()
    text = text.strip()
    if len(text) <= window.max_chars:
        return text
    tail = window.max_chars - window.head_chars
    head = text[: window.head_chars].rstrip()
    return f"{head}{ELLIPSIS}{text[-tail:].lstrip()}" if head else text[-tail:].lstrip()


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):  # OpenAI content parts: [{"type": "text", "text": ...}, {"type": "image_url"}]
        parts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                if not isinstance(part.get("text"), str):
                    raise InvalidQueryError(
                        f"a text part's 'text' must be a string, got {type(part.get('text')).__name__}"
                    )
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    raise InvalidQueryError(f"Message content must be text or a list of content parts, got {type(content).__name__}")


def messages_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of the last user message (the request being made now).

    Falls back to the last message with text when there is no user message (a request made
    only of a system prompt, say). Raises ``InvalidQueryError`` when no message has text.
    """
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise InvalidQueryError("messages must be a non-empty list of {'role': ..., 'content': ...} objects")
    for message in messages:
        if not isinstance(message, Mapping) or "role" not in message:
            raise InvalidQueryError("Each message must be an object with a 'role' (and usually 'content').")
    for wanted in ("user", None):
        for message in reversed(messages):
            if wanted is not None and message.get("role") != wanted:
                continue
            text = _content_text(message.get("content"))
            if text.strip():
                return text
    raise InvalidQueryError(NO_TEXT)


def prompt_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """Every message's text, joined: what the model reads, for estimating prompt tokens."""
    return "\n".join(_content_text(m.get("content")) for m in messages if isinstance(m, Mapping))
