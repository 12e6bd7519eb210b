"""The decisions log: every routing decision and completion, appended to a capped Redis stream.

One stream per router, ``llmrouter:{ROUTER}:decisions``, trimmed to about ``max_entries``
(``XADD ... MAXLEN ~``, so trimming is cheap). Each entry is one request's story, written after
the answer has been sent (off the request path), as one JSON document in the entry's field ``d``
(one field keeps the write cheap; the readers parse it):

| key | meaning |
|---|---|
| ``type`` | ``completion``, ``route`` (a decision without a call) or ``feedback`` |
| ``ts`` | milliseconds since the epoch |
| ``request_id`` | the id the answer carried (``x-llmrouter-request-id``) |
| ``router``, ``route``, ``model``, ``strategy``, ``confidence`` | the decision |
| ``requested`` | what the client asked for: ``auto`` or a model |
| ``priority`` | the request's priority |
| ``attempts``, ``fallbacks`` | models tried, and how many of them after the first |
| ``cache`` | ``true`` when the answer came from the semantic cache |
| ``prompt_tokens``, ``completion_tokens``, ``cost``, ``baseline_cost`` | usage and USD (empty when unknown) |
| ``latency_ms``, ``status``, ``error`` | how long, ``ok`` or ``error`` and the error's kind |
| ``reasons`` | the decision's exclusions, ``model: reason`` joined by `` | `` |
| ``text`` or ``text_sha256`` | the request's text only when opted in, else its hash |
| ``quality`` | (feedback entries) the quality reported for ``model`` |

Command builders and parsing only: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from redisvl_llmrouter.policy.catalog import finite_number
from redisvl_llmrouter.search import as_text

__all__ = ["append_command", "parse_entries", "stream_key", "text_fields"]


def stream_key(router: str) -> str:
    return f"llmrouter:{{{router}}}:decisions"


#: The most of a request's text an entry keeps (its head and tail): the log is capped in entries, not
#: bytes, and a request's text may run to a million characters.
MAX_LOGGED_TEXT_CHARS = 10_000


def text_fields(text: str, store_text: bool) -> dict[str, Any]:
    """The text (``store_text``), its head and tail with ``text_chars`` when longer than
    ``MAX_LOGGED_TEXT_CHARS``, else its SHA-256 only."""
    if store_text:
        if len(text) <= MAX_LOGGED_TEXT_CHARS:
            return {"text": text}
        half = MAX_LOGGED_TEXT_CHARS // 2
        return {"text": f"{text[:half]} … {text[-half:]}", "text_chars": len(text)}
    return {"text_sha256": hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()}


def append_command(router: str, entry: Mapping[str, Any], max_entries: int) -> tuple[Any, ...]:
    """``XADD`` of one entry (as JSON in field ``d``), trimming the stream to about ``max_entries``."""
    return ("XADD", stream_key(router), "MAXLEN", "~", str(max_entries), "*", "d", json.dumps(entry, default=str))


def parse_entries(reply: Sequence[Any] | None) -> list[dict[str, Any]]:
    """``XRANGE``/``XREVRANGE`` replies as dicts, with the stream id under ``id``.

    Malformed entries are skipped: not a JSON object, or without a finite numeric ``ts`` (a foreign
    or corrupted entry must not break every report on the log).
    """
    out = []
    for item in reply or []:
        entry_id, fields = item[0], item[1]
        pairs = fields.items() if isinstance(fields, Mapping) else zip(fields[::2], fields[1::2], strict=False)
        raw = next((v for k, v in pairs if as_text(k) == "d"), None)
        try:
            data = json.loads(as_text(raw)) if raw is not None else None
        except json.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            continue
        ts = data.get("ts")
        if not finite_number(ts):
            continue
        data["ts"], data["id"] = int(ts), as_text(entry_id)
        out.append(data)
    return out
