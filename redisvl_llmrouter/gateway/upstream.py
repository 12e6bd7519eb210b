"""A local OpenAI-compatible upstream for demos and tests: a real HTTP server, no API key needed.

    llmrouter upstream --port 8001            # or: python -m redisvl_llmrouter.gateway.upstream

It serves ``POST /v1/chat/completions`` (plain and streamed) and ``GET /v1/models`` for any model
name, answering deterministically: ``"[<model>] <the last user message, echoed>"``, cut to
``max_tokens`` words, ``n`` times when asked for ``n`` answers (1 to 128, as OpenAI allows), with
usage counted in whitespace-separated words. Faults and latency are
programmable per model through ``POST /control``::

    {"model": "m", "fail": 3, "status": 500}   # the next 3 calls to m answer 500
    {"model": "m", "latency_ms": 250}          # every call to m takes 250 ms more
    {"model": "m", "fail_rate": 0.5, "seed": 1}  # half of the calls fail (reproducibly)
    {"model": "m", "hang_s": 30}               # calls to m stall (for client timeouts)
    {"model": "m", "hang_s": 30, "slow": 1}    # only the next call to m stalls
    {"model": "m", "break_stream": 2}          # the next 2 streams to m break after two chunks
    {"model": "m", "end_stream": 1}            # the next stream to m just ends after two chunks (no finish)
    {"model": "m", "error_event": 1}           # the next stream to m is a 200 whose first event is an error
    {"model": "m", "error_event": 1, "error_type": "invalid_request_error"}  # of that type (server_error)
    {"model": "m", "chunk_delay_ms": 50}       # streams from m pause 50 ms between chunks
    {"model": "m", "no_choices": 1}            # the next answer from m is a 200 without choices
    {"model": "m", "cut_json": 1}              # the next answer (or stream) from m is a 200 whose JSON is cut off
    {"model": "m", "fail": 1, "status": 400, "message": "..."}  # the failure's error message
    {"model": "m", "fail": 1, "status": 400, "code": "c", "param": "p"}  # and its error code and param
    {"model": "m", "fail": 1, "status": 429, "retry_after": 1}  # with a Retry-After header
    {"model": "m", "refuse": 1}                # the next answer from m is a refusal (content null)
    {"model": "m", "reasoning": 1}             # the next answer from m carries reasoning_content too
    {"reset": true}                             # forget every setting and count

With ``--api-key KEY`` it answers ``/v1/...`` only with ``Authorization: Bearer KEY`` (401 otherwise),
as a provider does, so a test can check that the gateway sends the key it was given.

``GET /control`` returns what each model has served (``calls``, ``failures``, ``ok``), so tests
can check that every request is accounted for, and each model's ``last`` request: its body
without the messages, and the names of its headers (never their values: one is the key).

A bare ASGI app on uvicorn (one event loop, so the state needs no locks): it takes thousands of
concurrent connections, which the gateway's load tests need (``http.server``'s thread per connection
managed about 70 requests a second at 1,000 concurrent connections here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

__all__ = ["app", "main"]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _State:
    """Per-model settings and counts, shared by the server's threads."""

    def __init__(self) -> None:
        self.settings: dict[str, dict[str, Any]] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self.rngs: dict[str, random.Random] = {}
        self.last: dict[str, dict[str, Any]] = {}

    def control(self, body: dict[str, Any]) -> None:
        if body.get("reset"):
            self.settings.clear()
            self.counts.clear()
            self.rngs.clear()
            self.last.clear()
            return
        model = str(body.get("model", "*"))
        current = self.settings.setdefault(model, {})
        current.update({k: v for k, v in body.items() if k != "model"})
        if "seed" in body:
            self.rngs[model] = random.Random(body["seed"])

    def outcome(self, model: str, stream: bool = False) -> tuple[int, float, float, str]:
        """(status to answer, extra latency in s, stall in s, fault) for the next call to ``model``.

        A fault is ``""``, ``"break_stream"``, ``"end_stream"``, ``"error_event"``, ``"no_choices"`` or
        ``"cut_json"`` (a 200 that is not an answer)."""
        counts = self.counts.setdefault(model, {"calls": 0, "failures": 0, "ok": 0})
        counts["calls"] += 1
        settings = {**self.settings.get("*", {}), **self.settings.get(model, {})}
        status, fault = 200, ""
        for kind in ("break_stream", "end_stream", "error_event", "no_choices", "cut_json"):
            applies = kind == "cut_json" or stream == (kind in ("break_stream", "end_stream", "error_event"))
            if settings.get(kind, 0) > 0 and applies:
                self.settings.setdefault(model, {})[kind] = settings[kind] - 1
                fault = kind
                break
        if fault:
            counts["failures"] += 1
            return status, float(settings.get("latency_ms", 0)) / 1000.0, 0.0, fault
        if settings.get("fail", 0) > 0:
            self.settings.setdefault(model, {})["fail"] = settings["fail"] - 1
            status = int(settings.get("status", 500))
        elif settings.get("fail_rate"):
            rng = self.rngs.setdefault(model, random.Random(0))
            if rng.random() < float(settings["fail_rate"]):
                status = int(settings.get("status", 500))
        counts["failures" if status != 200 else "ok"] += 1
        hang = float(settings.get("hang_s", 0))
        if "slow" in settings:  # stall only the next ``slow`` calls
            if settings["slow"] > 0:
                self.settings.setdefault(model, {})["slow"] = settings["slow"] - 1
            else:
                hang = 0.0
        return status, float(settings.get("latency_ms", 0)) / 1000.0, hang, fault

    def shape(self, model: str) -> str:
        """How the next answer from ``model`` looks: ``""`` (plain), ``"refuse"`` or ``"reasoning"``."""
        for kind in ("refuse", "reasoning"):
            if self.settings.get(model, {}).get(kind, 0) > 0:
                self.settings[model][kind] -= 1
                return kind
        return ""

    def snapshot(self) -> dict[str, Any]:
        return json.loads(json.dumps({"counts": self.counts, "settings": self.settings, "last": self.last}))


def _malformed(messages: list[Any]) -> str:
    """What is wrong with a request's messages, as a provider would say it ('' when nothing is)."""
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{i}] must be an object"
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list):
            return f"messages[{i}].content must be a string or a list of parts"
        for j, part in enumerate(content):
            if not isinstance(part, dict) or ("text" in part and not isinstance(part["text"], str)):
                return f"messages[{i}].content[{j}] must be a part object whose text is a string"
    return ""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def answer(body: dict[str, Any]) -> tuple[str, int, int, str]:
    """The deterministic answer to a request, its prompt and completion token counts (words), and its
    finish reason: ``length`` when ``max_tokens`` cut it, as OpenAI says, else ``stop``."""
    messages = body.get("messages") or []
    last_user = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    words = f"[{body.get('model')}] {last_user}".split()
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    finish = "stop"
    if isinstance(limit, int) and 0 < limit < len(words):
        words, finish = words[:limit], "length"
    prompt_tokens = sum(len(_text(m.get("content")).split()) for m in messages)
    return " ".join(words), prompt_tokens, len(words), finish


STATE = _State()


async def _send_json(
    send: Send, status: int, payload: dict[str, Any], extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    data = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _read_body(receive: Receive) -> dict[str, Any]:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    try:
        data = json.loads(b"".join(chunks) or b"{}")
    except ValueError:  # not JSON, or not UTF-8 (UnicodeDecodeError): answered as a body without fields
        return {}
    return data if isinstance(data, dict) else {}


def _not_found(path: str) -> dict[str, Any]:
    return {"error": {"message": f"no route {path}", "type": "invalid_request_error"}}


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """The upstream as a bare ASGI application."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path, method = scope["path"], scope["method"]
    if method == "GET":
        if path.startswith("/v1/models"):
            models = sorted(STATE.counts)
            data = [{"id": m, "object": "model", "owned_by": "local"} for m in models]
            await _send_json(send, 200, {"object": "list", "data": data})
        elif path.startswith("/control"):
            await _send_json(send, 200, STATE.snapshot())
        elif path.startswith("/health"):
            await _send_json(send, 200, {"status": "ok"})
        else:
            await _send_json(send, 404, _not_found(path))
        return
    body = await _read_body(receive)
    if path.startswith("/control"):
        STATE.control(body)
        await _send_json(send, 200, STATE.snapshot())
        return
    if not path.startswith("/v1/chat/completions"):
        await _send_json(send, 404, _not_found(path))
        return
    if REQUIRED_KEY is not None and _bearer(scope) != REQUIRED_KEY:
        error = {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error"}}
        await _send_json(send, 401, {**error, "code": "invalid_api_key"})
        return
    model = str(body.get("model") or "")
    if not model or not isinstance(body.get("messages"), list) or not body["messages"]:
        error = {"error": {"message": "model and messages are required", "type": "invalid_request_error"}}
        await _send_json(send, 400, error)
        return
    options, n = body.get("stream_options"), body.get("n", 1)
    n = 1 if n is None else n
    problem = (
        _malformed(body["messages"])
        or ("stream_options must be an object" if options is not None and not isinstance(options, dict) else "")
        or ("n must be a whole number from 1 to 128" if type(n) is not int or not 1 <= n <= 128 else "")
    )
    if problem:  # as a provider refuses it: the client's error, never a crash of this server
        await _send_json(send, 400, {"error": {"message": problem, "type": "invalid_request_error"}})
        return
    STATE.last[model] = {
        "body": {k: v for k, v in body.items() if k != "messages"},
        "headers": sorted({name.decode("latin-1").lower() for name, _ in scope.get("headers") or ()}),
    }
    status, delay, hang, fault = STATE.outcome(model, stream=bool(body.get("stream")))
    if hang or delay:
        await asyncio.sleep(hang + delay)
    if status != 200:
        kind = "rate_limit_error" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
        settings = {**STATE.settings.get("*", {}), **STATE.settings.get(model, {})}
        message = str(settings.get("message", f"injected failure for {model}"))
        error = {"error": {"message": message, "type": kind, "param": settings.get("param"), "code": status}}
        if "code" in settings:  # a provider's own code ("context_length_exceeded"), as OpenAI sends one
            error["error"]["code"] = settings["code"]
        wait = [(b"retry-after", str(settings["retry_after"]).encode())] if "retry_after" in settings else []
        await _send_json(send, status, error, wait)
        return
    text, prompt_tokens, completion_tokens, finish = answer(body)
    shape = STATE.shape(model)
    created, ident = int(time.time()), f"chatcmpl-{uuid.uuid4().hex[:24]}"
    usage = {  # n answers (all alike: the answer is deterministic), each billed its tokens
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens * n,
        "total_tokens": prompt_tokens + completion_tokens * n,
    }
    if fault == "cut_json":  # for a stream too: a body that is no event stream (a proxy's, a captive portal's)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"id": "' + ident.encode() + b'", "choi'})
        return
    if body.get("stream"):
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        pause = float(STATE.settings.get(model, {}).get("chunk_delay_ms", 0)) / 1000.0
        events = _stream_events(
            ident,
            created,
            model,
            text,
            usage,
            with_usage,
            broken=fault == "break_stream",
            shape=shape,
            n=n,
            finish=finish,
        )
        if fault == "end_stream":  # two chunks, then the stream closes cleanly: no finish_reason, no [DONE]
            events = events[:2]
        if fault == "error_event":  # a provider's way of answering a failure (5xx, overload) over SSE
            kind = str(STATE.settings.get(model, {}).get("error_type", "server_error"))
            events = [{"error": {"message": f"injected error event for {model}", "type": kind}}]
        if not await _stream(send, receive, events, pause, done=fault != "end_stream"):
            # the client left: counted, as a provider bills it
            STATE.counts[model]["cut"] = STATE.counts[model].get("cut", 0) + 1
        return
    if fault == "no_choices":
        await _send_json(send, 200, {"id": ident, "object": "chat.completion", "created": created, "model": model})
        return
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if shape == "refuse":
        message = {"role": "assistant", "content": None, "refusal": REFUSAL}
    elif shape == "reasoning":
        message["reasoning_content"] = REASONING
    await _send_json(
        send,
        200,
        {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": i, "message": message, "finish_reason": finish} for i in range(n)],
            "usage": usage,
        },
    )


#: What a refusal says, and the reasoning an answer shows (``refuse`` and ``reasoning`` in ``/control``).
REFUSAL = "I'm sorry, I can't help with that."
REASONING = "The user asked; I answer."

#: The key ``/v1/chat/completions`` requires (``--api-key``); None: any or none.
REQUIRED_KEY: str | None = None


def _bearer(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers") or ():
        if name.lower() == b"authorization":
            text = value.decode("latin-1")
            return text[7:] if text.lower().startswith("bearer ") else None
    return None


def _stream_events(
    ident: str,
    created: int,
    model: str,
    text: str,
    usage: dict[str, int],
    with_usage: bool,
    broken: bool = False,
    shape: str = "",
    n: int = 1,
    finish: str = "stop",
) -> list[dict[str, Any]]:
    base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
    field = "refusal" if shape == "refuse" else "content"
    words = (REFUSAL if shape == "refuse" else text).split(" ")
    # As OpenAI sends them: every choice names its finish_reason and logprobs, null until the end;
    # with n answers, each chunk carries one choice, told apart by its index.
    open_ = {"logprobs": None, "finish_reason": None}
    events = []
    for c in range(n):
        events.append({**base, "choices": [{"index": c, "delta": {"role": "assistant", "content": ""}, **open_}]})
        if shape == "reasoning":
            events.append({**base, "choices": [{"index": c, "delta": {"reasoning_content": REASONING}, **open_}]})
        events += [
            {**base, "choices": [{"index": c, "delta": {field: (" " if i else "") + w}, **open_}]}
            for i, w in enumerate(words)
        ]
        events.append({**base, "choices": [{"index": c, "delta": {}, "logprobs": None, "finish_reason": finish}]})
    if with_usage:
        events.append({**base, "choices": [], "usage": usage})
    if broken:  # two chunks, then an error event in the stream, as providers report a failure mid-answer
        events = [*events[:2], {"error": {"message": f"injected stream failure for {model}", "type": "server_error"}}]
    return events


async def _stream(
    send: Send, receive: Receive, events: list[dict[str, Any]], pause_s: float, done: bool = True
) -> bool:
    """Send the events as server-sent events, then ``[DONE]`` if ``done``; False if the client left before the end."""
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.ensure_future(watch())
    try:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i, event in enumerate(events):
            if i and pause_s:
                await asyncio.sleep(pause_s)
            if gone.is_set():
                return False
            data = b"data: " + json.dumps(event).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n" if done else b""})
        return True
    finally:
        watcher.cancel()


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(prog="llmrouter upstream", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, metavar="KEY", help="answer only requests bearing this key")
    args = parser.parse_args(argv)
    if args.api_key is not None and not args.api_key.strip():  # an unset variable: no key at all, else
        parser.error("argument --api-key: the key is empty (an unset variable?); give a key, or leave it out")
    global REQUIRED_KEY
    REQUIRED_KEY = args.api_key
    from redisvl_llmrouter.gateway.serve import check_listen_address

    check_listen_address(args.host, args.port)  # the real port is announced once listening
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    # Announce the real address (a free port when --port 0) once uvicorn is listening.
    original = server.startup

    async def startup(sockets: Any = None) -> None:
        await original(sockets=sockets)
        for srv in server.servers:
            for sock in srv.sockets:
                host, port = sock.getsockname()[:2]
                print(f"local upstream listening on http://{host}:{port}/v1", flush=True)

    server.startup = startup  # type: ignore[method-assign]
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
