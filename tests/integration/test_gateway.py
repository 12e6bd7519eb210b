"""The gateway over real HTTP: ``llmrouter serve`` driven by the official ``openai`` client, unmodified,
against the local upstream process, on the tests' Redis.

Breakers and live statistics belong to models and are shared through Redis, so every test that
makes a model fail uses model names of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

import httpx
import openai
import pytest
import redis
from gateway_support import (
    LLMROUTER,
    clock_shifted,
    free_port,
    gateway,
    launch,
    needs_libfaketime,
    output,
    redis_user,
    stop,
    upstream,
    wait_ready,
)

from redisvl_llmrouter import ModelCatalog, ModelSpec, Route, SemanticRouter
from redisvl_llmrouter.gateway.upstream import REFUSAL
from redisvl_llmrouter.observability.decisions import parse_entries, stream_key


@pytest.fixture(scope="module")
def local_upstream():
    with upstream() as up:
        yield up


@pytest.fixture(scope="module")
def server(redis_url, local_upstream, tmp_path_factory):
    with gateway(redis_url, local_upstream.url, tmp_path_factory.mktemp("gw")) as srv:
        yield srv


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=server.v1, api_key="none", max_retries=0) as c:
        yield c


#: An image content part: a message carrying it and no text has nothing to route on.
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def own_router(redis_url: str, tag: str, *, failures: int = 3) -> str:
    """A router in Redis whose models only this test uses: tier ``chat`` with two candidates."""
    name = f"gwr-{tag}"
    SemanticRouter(
        name=name,
        routes=[
            Route(
                name="chat",
                models=[f"{tag}/primary", f"{tag}/backup"],
                references=["hello there"],
                distance_threshold=2.0,
            )
        ],
        catalog=ModelCatalog(
            models=[
                ModelSpec(name=f"{tag}/primary", input_price=1.0, output_price=2.0),
                ModelSpec(name=f"{tag}/backup", input_price=2.0, output_price=4.0),
            ]
        ),
        redis_url=redis_url,
        overwrite=True,
    )
    return name


# ---------------------------------------------------------------------------- the OpenAI surface
def test_auto_routes_calls_the_chosen_model_and_says_so_in_headers(client):
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=ask("hello, how are you?"))
    answer = raw.parse()
    assert answer.model == "openai/gpt-4.1-nano" == raw.headers["x-llmrouter-model"]
    assert answer.choices[0].message.content == "[openai/gpt-4.1-nano] hello, how are you?"
    assert answer.usage.prompt_tokens == 4 and answer.usage.completion_tokens == 5
    assert raw.headers["x-llmrouter-route"] == "simple"
    assert raw.headers["x-llmrouter-request-id"].startswith("req-")
    # 4 prompt and 5 completion tokens at $0.10 / $0.40 per 1M; saving against opus at $5 / $25
    assert float(raw.headers["x-llmrouter-cost"]) == pytest.approx((4 * 0.10 + 5 * 0.40) / 1e6)
    assert float(raw.headers["x-llmrouter-saving"]) == pytest.approx((4 * 5 + 5 * 25 - 4 * 0.10 - 5 * 0.40) / 1e6)
    assert float(raw.headers["x-llmrouter-confidence"]) > 0


def test_the_openai_client_reads_the_request_id_of_an_answer_a_stream_and_an_error(client, local_upstream):
    """The id goes out as ``x-request-id`` too, the header the openai clients read (Python's and
    Node's): ``completion._request_id`` is the id feedback takes, an error's ``request_id`` its log entry's."""
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=ask("hello there"))
    assert raw.parse()._request_id == raw.headers["x-llmrouter-request-id"] != raw.headers["x-llmrouter-model"]
    streamed = client.chat.completions.with_raw_response.create(model="auto", stream=True, messages=ask("hi"))
    assert streamed.request_id == streamed.headers["x-llmrouter-request-id"]
    list(streamed.parse())
    failing = f"f{uuid.uuid4().hex[:6]}/m"
    local_upstream.control(model=failing, fail=10, status=500)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=failing, messages=ask("hi"))
    assert caught.value.request_id == caught.value.response.headers["x-llmrouter-request-id"]
    assert caught.value.request_id.startswith("req-")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_n_answers_come_back_every_one_and_billed_for_all(client, stream):
    messages = ask("hello, how are you?")
    if not stream:
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=messages, n=3)
        answer = raw.parse()
        assert [c.index for c in answer.choices] == [0, 1, 2]
        assert {c.message.content for c in answer.choices} == {"[openai/gpt-4.1-nano] hello, how are you?"}
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (4, 15)
        assert float(raw.headers["x-llmrouter-cost"]) == pytest.approx((4 * 0.10 + 15 * 0.40) / 1e6)
        return
    chunks = list(
        client.chat.completions.create(
            model="auto", messages=messages, n=3, stream=True, stream_options={"include_usage": True}
        )
    )
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert texts == dict.fromkeys(range(3), "[openai/gpt-4.1-nano] hello, how are you?")
    assert chunks[-1].usage.completion_tokens == 15


def test_router_name_routes_too_and_an_other_router_is_404(client, server):
    assert client.chat.completions.create(model=f"router/{server.router}", messages=ask("hi")).model
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="router/someone-else", messages=ask("hi"))
    assert caught.value.body["code"] == "model_not_found"


def test_streaming_gives_the_same_answer_chunk_by_chunk(client):
    chunks = list(client.chat.completions.create(model="auto", messages=ask("explain garbage collection"), stream=True))
    text = "".join(c.choices[0].delta.content for c in chunks if c.choices[0].delta.content)  # every chunk has one
    assert text == "[anthropic/claude-sonnet-4-5] explain garbage collection"
    assert {c.model for c in chunks} == {"anthropic/claude-sonnet-4-5"}
    assert all(c.usage is None for c in chunks)  # usage only when asked for, as from OpenAI
    asked = list(
        client.chat.completions.create(
            model="auto",
            messages=ask("explain garbage collection"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert asked[-1].choices == [] and asked[-1].usage.completion_tokens == 4


def test_a_concrete_model_passes_through(client, local_upstream):
    before = local_upstream.calls("vendor/any-model-name")
    answer = client.chat.completions.create(model="vendor/any-model-name", messages=ask("ping"), max_tokens=1)
    assert answer.model == "vendor/any-model-name" and answer.choices[0].message.content == "[vendor/any-model-name]"
    assert local_upstream.calls("vendor/any-model-name") == before + 1


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ("{not json", 400, "not valid JSON"),
        (json.dumps([1, 2]), 400, "JSON object"),
        (json.dumps({"model": "auto"}), 400, "'messages' is required"),
        (json.dumps({"messages": [{"role": "user", "content": "hi"}]}), 400, "'model' is required"),
        (json.dumps({"model": "auto", "messages": []}), 400, "non-empty list"),
        (json.dumps({"model": "auto", "messages": [{"content": "no role"}]}), 400, "role"),
        (
            json.dumps({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "priority": "urgent"}),
            400,
            "priority",
        ),
        (
            json.dumps({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "strategy": "fastest"}),
            400,
            "strategy",
        ),
        (
            json.dumps(
                {
                    "model": "auto",
                    "messages": [{"role": "user", "content": "hi"}],
                    "constraints": {"capabilities": ["telepathy"]},
                }
            ),
            400,
            "capabilities",
        ),
        (
            json.dumps(
                {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "constraints": {"max_cost": 0}}
            ),
            400,
            "No model satisfies",
        ),
        ('{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', 400, "NaN"),
        ('{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "timeout": Infinity}', 400, "Infinity"),
        ('{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "timeout": 1e308}', 400, "timeout"),
        ('{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "constraints": "cheap"}', 400, "mapping"),
        ('{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "constraints": [1]}', 400, "mapping"),
        ('{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "stream": "false"}', 400, "stream"),
        ('{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "tenant": "x"}', 400, "tenant"),
        (
            '{"model": "auto", "stream": true, "stream_options": "yes", "messages": [{"role": "user", "content": "hi"}]}',
            400,
            "stream_options",
        ),
        (
            '{"model": "auto", "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]}',
            400,
            "only allowed when 'stream' is true",
        ),
        ('{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e400}', 400, "too large"),
        # Integers no float holds, where a routed request's cost estimate would read them.
        (
            '{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1' + "0" * 400 + "}",
            400,
            "max_tokens",
        ),
        (
            '{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "n": 1' + "0" * 400 + "}",
            400,
            "n must be",
        ),
        (
            '{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "constraints": {"output_tokens": 1'
            + "0" * 400
            + "}}",
            400,
            "output_tokens",
        ),
        (json.dumps({"model": "m" * 257, "messages": [{"role": "user", "content": "hi"}]}), 400, "at most 256"),
        (json.dumps({"model": "a/b\nc", "messages": [{"role": "user", "content": "hi"}]}), 400, "printable name"),
        (
            '{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "x": ' + "[" * 5000 + "]" * 5000 + "}",
            400,
            "nested too deeply",
        ),
        (json.dumps({"model": "auto", "messages": [{"role": "user", "content": [IMAGE]}]}), 400, "names its model"),
        # A lone surrogate, as JSON escapes allow: no provider can be sent it (it failed on the way out, streamed,
        # and counted against the model and its fallbacks).
        (
            '{"model": "auto", "stream": true, "messages": [{"role": "system", "content": "be \\ud800 brief"},'
            ' {"role": "user", "content": "hi"}]}',
            400,
            "messages[0].content holds a lone surrogate",
        ),
        (
            '{"model": "openai/gpt-4.1-nano", "messages": [{"role": "user", "content": "hi"}], "user": "\\udc00"}',
            400,
            "user holds a lone surrogate",
        ),
        (
            '{"model": "openai/gpt-4.1-nano", "stream": true, "messages": [{"role": "user", "content": "hi"}],'
            ' "\\ud800": 1}',
            400,
            "a field's name holds a lone surrogate",
        ),
        (
            json.dumps(
                {
                    "model": "auto",
                    "messages": [{"role": "user", "content": "hi"}],
                    "n": 100,
                    "max_tokens": 256,
                    "constraints": {"max_cost": 0.0002},  # one choice of gpt-4.1-nano fits; a hundred do not
                }
            ),
            400,
            "No model satisfies",
        ),
        # 0 was taken for "not given": neither checked nor used for the cost estimate, and sent on as it was
        (json.dumps({"model": "auto", "messages": ask("hi"), "max_tokens": 0}), 400, "max_tokens must be from 1"),
        (
            json.dumps({"model": "auto", "messages": ask("hi"), "max_completion_tokens": -1}),
            400,
            "max_completion_tokens must be from 1",  # the field the client sent, not max_tokens
        ),
        (  # it said "No message has text content": the text was there, of the wrong type
            json.dumps({"model": "auto", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}),
            400,
            "a text part's 'text' must be a string",
        ),
    ],
)
def test_malformed_requests_get_openai_style_4xx(server, body, status, fragment):
    response = server.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert fragment in error["message"]


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"messages": None}, "messages"),
        ({"model": ""}, "model"),
        ({"priority": "urgent"}, "priority"),
        ({"strategy": "fastest"}, "strategy"),
        ({"constraints": {"max_cost": "cheap"}}, "constraints"),
        ({"strategy": "cost", "constraints": {"nonsense": 1}}, "constraints"),
        ({"timeout": -1}, "timeout"),
        ({"cache": "yes"}, "cache"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"n": 0}, "n"),
    ],
)
def test_a_refused_field_is_named_in_the_errors_param_as_openai_names_it(server, fields, param):
    body = {"model": "auto", "messages": ask("hi"), **fields}
    body = {k: v for k, v in body.items() if v is not None}
    error = server.post("/v1/chat/completions", json=body).json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param), error


@pytest.mark.parametrize(
    "fields, headers, param",
    [
        ({"priority": "bogus"}, {}, "priority"),
        ({"cache": "bogus"}, {}, "cache"),
        ({"timeout": -5}, {}, "timeout"),
        ({}, {"x-llmrouter-cache": "maybe"}, "x-llmrouter-cache"),
        ({}, {"x-llmrouter-max-cost": "abc"}, "x-llmrouter-max-cost"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/route"])
def test_an_option_a_completion_refuses_is_refused_by_the_decision_too_and_a_bad_header_is_named(
    server, path, fields, headers, param
):
    """``/v1/route`` answered 200 to a priority, cache or timeout its completion would refuse; an unknown
    ``x-llmrouter-cache`` value was ignored (the cache used), and a header that is not a number was a 400
    naming no header."""
    response = server.post(path, json={"model": "auto", "messages": ask("hi"), **fields}, headers=headers)
    error = response.json()["error"]
    assert (response.status_code, error["type"], error["param"]) == (400, "invalid_request_error", param), error


@pytest.mark.parametrize("stream", [False, True])
def test_text_outside_the_basic_plane_escaped_as_surrogate_pairs_is_answered(server, stream):
    body = '{"model": "openai/gpt-4.1-nano", "messages": [{"role": "user", "content": "hi \\ud83d\\ude00"}]'
    response = server.post("/v1/chat/completions", content=body + f', "stream": {json.dumps(stream)}}}')
    assert response.status_code == 200 and "\\ud83d\\ude00" in response.text  # the emoji, as JSON escapes it


def test_the_server_says_nothing_unasked_and_its_dashboard_cannot_be_framed_or_injected(server):
    """An OpenAPI page answered without a key; a trailing slash redirected to the client's own Host header."""
    assert server.get("/openapi.json").status_code == 404
    # A loopback name: a keyless gateway refuses other Hosts before any route (or redirect) is looked at.
    slashed = server.post("/v1/chat/completions/", json={}, headers={"host": "evil.localhost"}, follow_redirects=False)
    assert slashed.status_code == 404 and "location" not in slashed.headers
    page = server.get("/dashboard")
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    assert (page.headers["x-frame-options"], page.headers["x-content-type-options"]) == ("DENY", "nosniff")


def test_dashboards_polling_at_once_share_one_report(server):
    """Each report takes a CPU for a while on a busy log: tabs polling together made one each, and every
    other request of the process waited (a median 25 ms became 250 ms with eight pollers)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: server.get("/dashboard/data?since=7m").json(), range(4)))
    assert len({a["now_ms"] for a in answers}) == 1 and all(a["report"] == answers[0]["report"] for a in answers)
    assert server.get("/dashboard/data?since=8m").json()["since"] == "8m"  # another window: a report of its own


def test_an_error_quoting_a_huge_value_is_cut_short(server):
    body = {"model": "auto", "messages": ask("hi"), "priority": "x" * 1_000_000}
    response = server.post("/v1/chat/completions", json=body)
    assert response.status_code == 400 and "priority" in response.json()["error"]["message"]
    assert len(response.content) < 3000


def test_route_says_text_must_be_a_string(server):
    response = server.post("/v1/route", json={"text": 5})
    assert response.status_code == 400 and "'text' must be a string" in response.json()["error"]["message"]


def test_route_checks_a_model_as_the_chat_would_and_never_decides_for_a_named_one(server):
    """/v1/route ignored ``model``: another router's name got a decision (chat: 404), and so did a model
    name, which chat passes through unrouted."""
    other = server.post("/v1/route", json={"text": "hi", "model": "router/other"})
    assert other.status_code == 404 and other.json()["error"]["code"] == "model_not_found"
    named = server.post("/v1/route", json={"text": "hi", "model": "openai/gpt-4.1-nano"})
    assert named.status_code == 400 and "unrouted" in named.json()["error"]["message"]
    for model in ("auto", f"router/{server.router}"):
        assert server.post("/v1/route", json={"text": "hi", "model": model}).json()["model"]


def test_a_feedback_model_that_is_not_a_name_is_a_400(server, client):
    request_id = client.chat.completions.with_raw_response.create(model="auto", messages=ask("hi")).headers[
        "x-llmrouter-request-id"
    ]
    response = server.post("/v1/feedback", json={"request_id": request_id, "model": ["x"], "quality": 0.5})
    assert response.status_code == 400 and "string" in response.json()["error"]["message"]


def test_feedback_names_what_is_wrong_with_it_before_looking_up_its_request(server):
    """A body with "statement" got 'needs request_id', and quality 2 on an unknown id a 404 unknown_request."""
    statement = server.post("/v1/feedback", json={"statement": "hi", "model": "m", "quality": 1.0})
    assert statement.status_code == 400 and "'statement'" in statement.json()["error"]["message"]
    for bad in ({"quality": 2}, {"quality": 0.5, "cost": -1}, {"quality": "good"}):
        response = server.post("/v1/feedback", json={"request_id": "req-" + "0" * 32, **bad})
        assert response.status_code == 400, (bad, response.json())


def test_an_origin_that_is_no_url_is_a_cross_origin_refusal_not_a_500(server):
    response = server.post("/v1/route", json={"text": "hi"}, headers={"origin": "http://[::1"})
    assert response.status_code == 403 and response.json()["error"]["code"] == "cross_origin"


def test_get_endpoints_answer_head_as_load_balancers_check_them(server):
    for path in ("/health", "/v1/models", "/metrics", "/stats"):
        response = httpx.head(f"{server.base}{path}", timeout=30)
        assert response.status_code == 200 and response.content == b"", path


def test_a_compressed_body_is_a_415_that_says_so(server):
    import gzip

    body = gzip.compress(json.dumps({"model": "auto", "messages": ask("hi")}).encode())
    response = server.post(
        "/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "unsupported_encoding" and "uncompressed" in error["message"]


def test_a_body_over_max_body_mb_is_a_413_whether_its_length_is_declared_or_not(server):
    limit = 32_000_000
    big = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "x" * (limit + 10)}]}).encode()
    declared = server.post("/v1/chat/completions", content=big, headers={"content-type": "application/json"})
    streamed = server.post("/v1/chat/completions", content=iter([big[:1000], big[1000:]]))  # chunked, no length
    for response in (declared, streamed):
        assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    assert server.get("/health").status_code == 200


def test_a_request_awaiting_feedback_keeps_its_routing_text_and_the_whole_prompts_size(client, server, redis_url):
    """The text, not the whole prompt; its size, which calibration prices the learned row by."""
    from redisvl_llmrouter.learning.memory import request_key
    from redisvl_llmrouter.policy.catalog import estimate_tokens
    from redisvl_llmrouter.request_text import ELLIPSIS, prompt_text

    prompt = "Summarise this contract. " + "clause " * 5_000 + "Is it fair?"
    raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4.1-nano", messages=ask(prompt))
    key = request_key(server.router, raw.headers["x-llmrouter-request-id"])
    time.sleep(0.3)  # the record is written just after the answer
    kept, tokens = redis.Redis.from_url(redis_url).hmget(key, "text", "tokens")
    kept = kept.decode()
    assert len(kept) <= 1000 + len(ELLIPSIS) and kept.startswith("Summarise") and kept.endswith("Is it fair?")
    assert int(tokens) == estimate_tokens(prompt_text(ask(prompt))) > 8_000


def test_a_request_made_only_of_an_image_passes_through_to_a_named_model(client):
    answer = client.chat.completions.create(
        model="openai/gpt-4.1-nano", messages=[{"role": "user", "content": [IMAGE]}]
    )
    assert answer.choices[0].message.content == "[openai/gpt-4.1-nano]"


def test_a_routed_request_longer_than_the_routers_limit_is_routed_on_its_head_and_tail(client, server):
    text = "Explain the attached log. " + "log line 42 ok\n" * 90_000  # 1.35 million characters
    assert len(text) > 1_000_000
    answer = client.chat.completions.with_raw_response.create(model="auto", messages=ask(text), max_tokens=3)
    assert answer.http_response.status_code == 200 and answer.headers["x-llmrouter-route"]


def test_a_web_page_of_another_origin_cannot_post_to_the_gateway(server):
    """What a browser sends for a page on evil.example (even as a CORS-free text/plain "simple" request)."""
    body = json.dumps({"model": "auto", "messages": ask("hi")})
    host = server.base.removeprefix("http://")
    for headers in (
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": "http://evil.example"},
    ):
        refused = server.post("/v1/chat/completions", content=body, headers={"content-type": "text/plain", **headers})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "cross_origin"
    for headers in ({"sec-fetch-site": "same-origin"}, {"origin": f"http://{host}"}, {}):  # its own pages; servers
        assert server.post("/v1/chat/completions", content=body, headers=headers).status_code == 200
    assert server.get("/v1/models", headers={"sec-fetch-site": "cross-site"}).status_code == 200  # reading is harmless


def test_a_page_reaching_a_keyless_gateway_by_dns_rebinding_is_refused(server, local_upstream):
    """A page on rebound.example points its name at 127.0.0.1: to the browser its requests are same-origin
    (answers readable), and the gateway spent the provider keys for it and showed it /stats."""
    port = server.base.rsplit(":", 1)[1]
    rebound = {
        "host": f"rebound.example:{port}",
        "origin": f"http://rebound.example:{port}",
        "sec-fetch-site": "same-origin",
    }
    calls = local_upstream.calls("anthropic/claude-sonnet-4-5") + local_upstream.calls("openai/gpt-4.1-nano")
    for refused in (
        server.post(
            "/v1/chat/completions", json={"model": "openai/gpt-4.1-nano", "messages": ask("hi")}, headers=rebound
        ),
        server.get("/stats", headers=rebound),
        server.get("/dashboard/data", headers=rebound),
    ):
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "host_not_allowed"
        assert "allowed_hosts" in refused.json()["error"]["message"]
    assert local_upstream.calls("anthropic/claude-sonnet-4-5") + local_upstream.calls("openai/gpt-4.1-nano") == calls
    for name in ("localhost", "127.0.0.1", "app.localhost"):  # this machine, by any of its names
        assert server.get("/stats", headers={"host": f"{name}:{port}"}).status_code == 200


def test_allowed_hosts_names_a_proxy_in_front_and_api_keys_make_the_host_irrelevant(
    redis_url, local_upstream, tmp_path
):
    with gateway(redis_url, local_upstream.url, tmp_path, {"allowed_hosts": ["gw.internal"]}) as srv:
        assert srv.get("/stats", headers={"host": "GW.internal:443"}).status_code == 200
        assert srv.get("/stats", headers={"host": "other.internal"}).status_code == 403
    with gateway(redis_url, local_upstream.url, tmp_path, env={"LLMROUTER_API_KEYS": "k-host"}) as srv:
        keyed = {"host": "anything.example", "authorization": "Bearer k-host"}
        assert srv.get("/stats", headers=keyed).status_code == 200  # a rebound page has no key to send


def test_error_codes_name_the_error_on_every_path(server, redis_url):
    bad_window = server.get("/dashboard/data", params={"since": "yesterday"})
    assert bad_window.status_code == 400 and bad_window.json()["error"]["message"].startswith("since 'yesterday':")
    assert server.get("/v1/nowhere").json()["error"]["code"] == "not_found"
    wrong = server.get("/v1/chat/completions")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["allow"]
    text = f"hi {uuid.uuid4().hex}"
    body = {"model": "auto", "messages": [{"role": "user", "content": text}], "constraints": {"max_cost": 0}}
    assert server.post("/v1/chat/completions", json=body).json()["error"]["code"] == "no_eligible_model"
    store, digest = redis.Redis.from_url(redis_url), hashlib.sha256(text.encode()).hexdigest()
    deadline = time.monotonic() + 5
    while not (
        logged := [e for e in parse_entries(store.xrange(stream_key(server.router))) if e.get("text_sha256") == digest]
    ):
        assert time.monotonic() < deadline, "the refused request was never logged"
        time.sleep(0.05)
    assert logged[0]["error"] == "no_eligible_model" and "max_cost" in logged[0]["reasons"]  # why, as a decision says
    assert logged[0]["route"] == server.post("/v1/route", json={"text": text}).json()["name"]  # matched, then refused


def test_a_stream_passes_parameters_the_sdk_does_not_know_and_holds_no_slot(client, server):
    chunks = list(
        client.chat.completions.create(
            model="openai/gpt-4.1-nano", messages=ask("hi there"), stream=True, extra_body={"top_k": 3}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "[openai/gpt-4.1-nano] hi there"
    model = server.get("/stats").json()["models"]["openai/gpt-4.1-nano"]
    assert model["queue_active"] == 0 and model["in_flight"] == 0


@pytest.mark.parametrize("stream", [False, True])
def test_body_fields_named_like_sdk_options_stay_in_the_body_and_never_set_headers(redis_url, tmp_path, stream):
    """A client's body never sets the gateway's headers, query or key (the SDK's extra_* options), and a
    field named ``self`` is a field like any other (it was a 500: Python's receiver of the call)."""
    model = "openai/gpt-4.1-nano"
    fields = {
        "extra_headers": {"x-injected": "yes", "authorization": "Bearer client-chosen"},
        "extra_query": {"api-version": "1"},
        "extra_body": {"zzz": 1},
        "self": 1,
    }
    env = {"UPSTREAM_KEY": "the-key"}
    with (
        upstream(api_key="the-key") as up,
        gateway(redis_url, up.url, tmp_path, {"upstream_api_key_env": "UPSTREAM_KEY"}, env) as srv,
    ):
        failures = srv.get("/stats").json()["models"][model]["failures"]  # other tests' calls share the model's
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            answer = c.chat.completions.create(model=model, messages=ask("hi"), stream=stream, extra_body=fields)
            text = (
                "".join(ch.choices[0].delta.content or "" for ch in answer if ch.choices)
                if stream
                else (answer.choices[0].message.content)
            )
        last = httpx.get(f"{up.root}/control", timeout=5).json()["last"][model]
        stats = srv.get("/stats").json()["models"][model]
    assert text == f"[{model}] hi"  # the upstream's key check passed: the gateway's key alone was sent
    assert {k: last["body"][k] for k in fields} == fields
    assert "x-injected" not in last["headers"] and "zzz" not in last["body"] and "api-version" not in last["body"]
    assert stats["failures"] == failures and stats["breaker"] == "closed"


def test_stream_chunks_keep_the_providers_null_fields(server):
    """Strict clients expect ``"finish_reason": null`` on every chunk before the last, as OpenAI sends it."""
    body = {"model": "openai/gpt-4.1-nano", "stream": True, "messages": ask("two words")}
    with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, timeout=30) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    choices = [e["choices"][0] for e in events]
    assert all(c["finish_reason"] is None and "logprobs" in c for c in choices[:-1])
    assert choices[-1]["finish_reason"] == "stop"


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_that_refuses_connections_is_named_a_connection_failure(redis_url, tmp_path, stream):
    from gateway_support import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with gateway(redis_url, dead, tmp_path) as srv, openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
        with pytest.raises(openai.APIStatusError) as failed:
            answer = c.chat.completions.create(model="openai/gpt-4.1-nano", messages=ask("hi"), stream=stream)
            list(answer) if stream else None
    assert failed.value.status_code == 502 and "gpt-4.1-nano: connection" in failed.value.message


def test_the_openai_client_raises_its_own_error_types(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="auto", messages=[])
    with pytest.raises(openai.BadRequestError, match="No model satisfies"):
        client.chat.completions.create(model="auto", messages=ask("hi"), extra_body={"constraints": {"max_cost": 0}})


def test_priority_strategy_and_constraints_as_extra_body_or_headers(client):
    cheap = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=ask("write a python function that validates email addresses"),
        extra_body={"strategy": "cost", "priority": "high"},
    )
    assert cheap.headers["x-llmrouter-model"] == "anthropic/claude-haiku-4-5"
    assert cheap.headers["x-llmrouter-strategy"] == "cost"
    vision = client.chat.completions.with_raw_response.create(
        model="auto", messages=ask("hello!"), extra_headers={"x-llmrouter-capabilities": "code"}
    )
    assert vision.headers["x-llmrouter-model"] == "openai/gpt-4.1-mini"


def test_a_request_needing_tools_an_image_or_json_goes_to_a_model_the_catalog_says_has_them(
    redis_url, local_upstream, tmp_path
):
    """The cheap model lists no capabilities: a routed request with tools, an image or a JSON format went
    to it all the same, and a real provider refused the call (counted against the model's breaker)."""
    tag = f"cap{uuid.uuid4().hex[:6]}"
    plain, seeing = f"{tag}/plain", f"{tag}/seeing"
    SemanticRouter(
        name=tag,
        routes=[Route(name="chat", models=[plain, seeing], references=["hello there"], distance_threshold=2.0)],
        catalog=ModelCatalog(
            models=[
                ModelSpec(name=plain, input_price=0.1, output_price=0.2),
                ModelSpec(name=seeing, input_price=1.0, output_price=2.0, capabilities=["vision", "tools", "json"]),
            ]
        ),
        redis_url=redis_url,
        overwrite=True,
    )
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}
    looking = [{"role": "user", "content": [{"type": "text", "text": "what is in this picture?"}, IMAGE]}]
    with gateway(redis_url, local_upstream.url, tmp_path, {"router": tag}) as srv:
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            chosen = {
                "plain": c.chat.completions.create(model="auto", messages=ask("hello there")).model,
                "tools": c.chat.completions.create(model="auto", messages=ask("weather?"), tools=[tool]).model,
                "image": c.chat.completions.create(model="auto", messages=looking).model,
                "json": c.chat.completions.create(
                    model="auto", messages=ask("hello there"), response_format={"type": "json_object"}
                ).model,
            }
        decided = srv.post("/v1/route", json={"messages": ask("weather?"), "tools": [tool]}).json()
        undecided = srv.post("/v1/route", json={"messages": ask("weather?")}).json()
    assert chosen == {"plain": plain, "tools": seeing, "image": seeing, "json": seeing}
    assert decided["model"] == seeing and undecided["model"] == plain  # /v1/route decides as the chat would
    assert local_upstream.calls(plain) == 1


def test_models_health_route_and_metrics(server, client):
    listed = server.get("/v1/models").json()["data"]
    ids = [m["id"] for m in listed]
    assert ids[:2] == ["auto", f"router/{server.router}"] and "anthropic/claude-opus-4-5" in ids
    assert all(
        set(m) == {"id", "object", "created", "owned_by"} and m["created"] > 0 for m in listed
    )  # OpenAI's schema
    assert client.models.retrieve("anthropic/claude-opus-4-5").id == "anthropic/claude-opus-4-5"  # a / in the id
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("nobody/such-model")
    assert missing.value.body["code"] == "model_not_found"
    assert server.get("/health").json() == {"status": "ok", "router": server.router, "redis": "ok"}
    decision = server.post("/v1/route", json={"text": "what is a normal resting heart rate?"}).json()
    assert decision["decision"]["floors"] == ["medical"] and decision["model"] != "openai/gpt-4.1-nano"
    both = server.post("/v1/route", json={"text": "hi", "messages": [{"role": "user", "content": "hello"}]})
    assert both.status_code == 400 and "not both" in both.json()["error"]["message"]
    metrics = server.get("/metrics").text
    for name in (
        "llmrouter_requests_total",
        "llmrouter_request_latency_seconds_bucket",
        "llmrouter_cost_usd_total",
        "llmrouter_breaker_state",
        "llmrouter_queue_depth",
        "llmrouter_routing_decisions_total",
    ):
        assert name in metrics


def test_feedback_by_the_request_id_on_the_answer(client, server, redis_url, tmp_path):
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=ask("convert 3 miles to kilometers"))
    request_id = raw.headers["x-llmrouter-request-id"]
    time.sleep(0.2)  # the request is recorded after the answer is sent
    reply = server.post("/v1/feedback", json={"request_id": request_id, "quality": 0.0})
    assert reply.status_code == 200 and reply.json()["model"] == "openai/gpt-4.1-nano"
    assert SemanticRouter.from_existing(server.router, redis_url=redis_url).memory_info().rows == 1
    again = server.post("/v1/feedback", json={"request_id": request_id, "quality": 0.0})  # idempotent
    assert again.status_code == 200
    bad = server.post("/v1/feedback", json={"request_id": request_id, "quality": 2})
    assert bad.status_code == 400 and "quality" in bad.json()["error"]["message"]
    absurd = server.post("/v1/feedback", json={"request_id": request_id, "quality": 1.0, "cost": 1e300})
    assert absurd.status_code == 400 and "cost" in absurd.json()["error"]["message"]
    unknown = server.post("/v1/feedback", json={"request_id": "req-" + "0" * 32, "quality": 1.0})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_request"
    typo = server.post("/v1/feedback", json={"request_id": "req-nope", "quality": 1.0, "model": "openai/gpt-4.1-nano"})
    assert typo.status_code == 404  # never taken for a statement to learn
    misspelt = server.post("/v1/feedback", json={"request_id": request_id, "quality": 1.0, "costt": 0.5})
    assert misspelt.status_code == 400 and "'costt'" in misspelt.json()["error"]["message"]  # never dropped
    memory = SemanticRouter.from_existing(server.router, redis_url=redis_url)
    assert memory.memory_info().rows == 1 and memory.memory_info().mean_quality["openai/gpt-4.1-nano"] == 0.0
    timed = server.post("/v1/feedback", json={"request_id": request_id, "quality": 0.0, "latency_ms": 1234})
    assert timed.status_code == 200
    memory.export_with_embeddings(tmp_path / "export.json")
    rows = json.loads((tmp_path / "export.json").read_text())["outcomes"]
    assert [row["outcomes"]["openai/gpt-4.1-nano"]["latency_ms"] for row in rows] == [1234]


# ---------------------------------------------------------------------------- keys
def test_api_keys_401_without_and_200_with(redis_url, local_upstream, tmp_path):
    with gateway(redis_url, local_upstream.url, tmp_path, env={"LLMROUTER_API_KEYS": "k-one,k-two"}) as srv:
        with openai.OpenAI(base_url=srv.v1, api_key="wrong", max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError) as caught:
                bad.chat.completions.create(model="auto", messages=ask("hi"))
        assert caught.value.status_code == 401 and caught.value.body["code"] == "invalid_api_key"
        assert srv.get("/stats").status_code == 401
        assert srv.get("/health").status_code == 200  # liveness needs no key
        with openai.OpenAI(base_url=srv.v1, api_key="k-two", max_retries=0) as good:
            assert good.chat.completions.create(model="auto", messages=ask("hi")).choices
        assert "k-one" not in srv.proc.args and "k-two" not in " ".join(srv.proc.args)


def test_each_api_key_gives_feedback_on_and_sees_only_its_own_requests(redis_url, local_upstream, tmp_path):
    with gateway(redis_url, local_upstream.url, tmp_path, env={"LLMROUTER_API_KEYS": "k-alice,k-bob"}) as srv:
        ids = {}
        for key in ("k-alice", "k-bob"):
            with openai.OpenAI(base_url=srv.v1, api_key=key, max_retries=0) as c:
                raw = c.chat.completions.with_raw_response.create(model="auto", messages=ask(f"hi from {key}"))
                ids[key] = raw.headers["x-llmrouter-request-id"]
        decided = srv.post("/v1/route", json={"text": "a decision only"}, headers={"authorization": "Bearer k-alice"})
        assert decided.status_code == 200
        time.sleep(0.3)  # the records and the log are written just after the answers

        def feedback(key: str, request_id: str) -> httpx.Response:
            auth = {"authorization": f"Bearer {key}"}
            return srv.post("/v1/feedback", json={"request_id": request_id, "quality": 0.0}, headers=auth)

        stolen = feedback("k-bob", ids["k-alice"])  # another client's request is unknown to bob
        assert stolen.status_code == 404 and stolen.json()["error"]["code"] == "unknown_request"
        assert feedback("k-alice", ids["k-alice"]).status_code == 200
        for key, other in (("k-alice", "k-bob"), ("k-bob", "k-alice")):
            recent = srv.get("/dashboard/data", headers={"authorization": f"Bearer {key}"}).json()["recent"]
            seen = {e.get("request_id") for e in recent}
            assert ids[key] in seen and ids[other] not in seen
            decisions = [e for e in recent if e.get("type") == "route"]  # /v1/route's are the caller's too
            assert len(decisions) == (key == "k-alice") and all(e["request_id"] for e in decisions)


def test_a_redis_that_refuses_writes_costs_bookkeeping_for_a_while_not_answers(local_upstream, tmp_path):
    from redisvl_llmrouter.embedded import EmbeddedRedis, _free_port

    server = EmbeddedRedis().start()  # its own: this test turns it into a read-only replica
    store = redis.Redis.from_url(server.url)
    try:
        with gateway(server.url, local_upstream.url, tmp_path) as srv:
            with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
                c.chat.completions.create(model="auto", messages=ask("warm up"))
                store.execute_command("REPLICAOF", "127.0.0.1", str(_free_port()))  # a failover: read-only
                answered = [
                    c.chat.completions.with_raw_response.create(model="auto", messages=ask(f"hello {i}"))
                    for i in range(5)
                ]  # routed, answered: the feedback records and the log wait for Redis to take writes again
                health = srv.get("/health")
                assert (health.status_code, health.json()["redis"]) == (200, "read_only")
                store.execute_command("REPLICAOF", "NO", "ONE")
                store.config_set("maxmemory", "1")  # full: told apart from a replica (it was "read_only" too)
                full = srv.get("/health")
                store.config_set("maxmemory", "0")
                assert (full.status_code, full.json()["redis"]) == (200, "full")
            ids = {r.headers["x-llmrouter-request-id"] for r in answered}
            deadline = time.monotonic() + 20  # the write-behind retries after a pause
            while not ids <= {e["request_id"] for e in parse_entries(store.xrange(stream_key(srv.router)))}:
                assert time.monotonic() < deadline, "answers given while Redis was read-only were never logged"
                time.sleep(0.2)
            ok = srv.post("/v1/feedback", json={"request_id": sorted(ids)[0], "quality": 1.0})
            assert ok.status_code == 200  # its feedback record was kept too
            assert srv.get("/health").json()["redis"] == "ok"
    finally:
        store.close()
        server.stop()


def test_a_redis_password_rotated_under_a_running_gateway_is_a_503_that_says_so(local_upstream, tmp_path):
    """It was a 500 "Redis refused an operation" (a server bug, to a client and a load balancer), and
    /health called a Redis that answers "unreachable"."""
    from redisvl_llmrouter.embedded import EmbeddedRedis

    server = EmbeddedRedis().start()  # its own: this test changes its password
    admin = redis.Redis.from_url(server.url)
    admin.config_set("requirepass", "old-secret-7f3a")
    admin = redis.Redis.from_url(server.url, password="old-secret-7f3a")
    try:
        url = server.url.replace("redis://", "redis://:old-secret-7f3a@")
        with gateway(url, local_upstream.url, tmp_path) as srv:
            with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
                answered = c.chat.completions.with_raw_response.create(model="auto", messages=ask("before"))
                admin.config_set("requirepass", "new-secret-9c1d")
                admin.execute_command("CLIENT", "KILL", "TYPE", "normal")  # the gateway reconnects: refused
                with pytest.raises(openai.InternalServerError) as refused:
                    c.chat.completions.create(model="auto", messages=ask("after"))
            feedback = srv.post(
                "/v1/feedback", json={"request_id": answered.headers["x-llmrouter-request-id"], "quality": 1}
            )
            health = srv.get("/health")
            log = output(srv.proc)
        assert refused.value.status_code == 503 and refused.value.code == "redis_credentials"
        assert (feedback.status_code, feedback.json()["error"]["code"]) == (503, "redis_credentials")
        assert (health.status_code, health.json()["redis"]) == (503, "credentials_refused")
        assert "refuses its credentials" in log and "old-secret-7f3a" not in log
    finally:
        server.stop()


def test_a_running_gateway_routes_its_first_request_a_second_after_a_change_on_the_new_definition(
    redis_url, local_upstream, tmp_path
):
    question = {"messages": ask("how deep should I plant tulip bulbs in clay soil?")}
    with gateway(redis_url, local_upstream.url, tmp_path) as srv:
        assert srv.post("/v1/route", json=question).json()["name"] != "gardening"
        with SemanticRouter.from_existing(srv.router, redis_url=redis_url) as other:
            other.add_route(  # the very question: it matches whatever the aggregation
                Route(name="gardening", model="openai/gpt-4.1-nano", references=[question["messages"][0]["content"]])
            )
        time.sleep(1.2)  # the gateway checks the stored definition at most once a second, before routing
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:  # the very first request
            answer = c.chat.completions.with_raw_response.create(model="auto", **question)
        assert answer.headers["x-llmrouter-route"] == "gardening"
        assert srv.post("/v1/route", json=question).json()["name"] == "gardening"


def test_sigterm_gives_requests_in_flight_the_shutdown_timeout_and_no_longer(redis_url, local_upstream, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    model = f"hang{uuid.uuid4().hex[:6]}/stuck"
    slow = f"slow{uuid.uuid4().hex[:6]}/stream"
    local_upstream.control(model=model, hang_s=20)  # well past the 2 s, not so long it holds the upstream's exit
    local_upstream.control(model=slow, chunk_delay_ms=1500)  # its stream has begun when the 2 s run out

    def streamed() -> str:
        body = {"model": slow, "messages": ask("hi"), "stream": True}
        with httpx.stream("POST", f"{srv.v1}/chat/completions", json=body, timeout=180) as answer:
            return "".join(answer.iter_text())

    with gateway(redis_url, local_upstream.url, tmp_path, {"shutdown_timeout_s": 2}) as srv:
        body = {"model": model, "messages": ask("hi")}
        with ThreadPoolExecutor(2) as pool:
            call = pool.submit(httpx.post, f"{srv.v1}/chat/completions", json=body, timeout=180)
            stream = pool.submit(streamed)
            time.sleep(1.0)  # the call is in flight, waiting on the provider; the stream has its first chunk
            started = time.monotonic()
            srv.proc.terminate()
            srv.proc.wait(timeout=60)
            took = time.monotonic() - started
            cut_off, cut_stream = call.result(timeout=60), stream.result(timeout=60)
            log = output(srv.proc)
        logged = parse_entries(redis.Redis.from_url(redis_url).xrange(stream_key(srv.router)))
    assert took < 15, f"serve took {took:.1f} s to stop with shutdown_timeout_s 2"
    # Cut off by the shutdown, it is still told so, as OpenAI would: not a bare-text 500 and a traceback.
    assert cut_off.status_code == 503 and cut_off.json()["error"]["code"] == "shutting_down"
    # A stream already under way ends with an error event and [DONE], not a cut chunked body.
    assert '"code": "shutting_down"' in cut_stream and cut_stream.endswith("data: [DONE]\n\n")
    assert "Exception in ASGI application" not in log and "Traceback" not in log
    # Logged as what ended them: the shutdown, not clients that left.
    assert sorted((e["model"], e["error"]) for e in logged if e["model"] in (model, slow)) == [
        (model, "shutting_down"),
        (slow, "shutting_down"),
    ]


def test_with_workers_a_stopping_gateway_refuses_new_connections_at_once_and_finishes_its_requests(
    redis_url, local_upstream, tmp_path
):
    """A client that reaches a stopping gateway should be refused (and try another), not wait out the shutdown."""
    from concurrent.futures import ThreadPoolExecutor

    model = f"slow{uuid.uuid4().hex[:6]}/answer"
    local_upstream.control(model=model, latency_ms=3000)
    with gateway(redis_url, local_upstream.url, tmp_path, workers=2) as srv:
        body = {"model": model, "messages": ask("hi")}
        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(httpx.post, f"{srv.v1}/chat/completions", json=body, timeout=60)
            time.sleep(1.0)  # in flight, waiting on the provider for 2 s more
            srv.proc.terminate()
            refused = False
            while not refused and not call.done():  # polled: how soon the signal is handled depends on the load
                try:
                    httpx.get(f"{srv.base}/health", timeout=0.5)
                # A connection reset while the listener closes, too, or one taken just before it closed and
                # dropped unanswered (httpx: "Server disconnected"): either way the client goes elsewhere at once.
                except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
                    refused = True
                except httpx.TimeoutException:
                    pass
                else:
                    time.sleep(0.05)
            assert refused and not call.done()  # refused while the request in flight was still being answered
            assert call.result(timeout=60).status_code == 200  # and that request was answered


# ---------------------------------------------------------------------------- faults
def test_a_failing_primary_is_answered_by_its_fallback(redis_url, local_upstream, tmp_path):
    tag = f"fb{uuid.uuid4().hex[:6]}"
    router = own_router(redis_url, tag)
    local_upstream.control(model=f"{tag}/primary", fail=100, status=500)
    with gateway(
        redis_url, local_upstream.url, tmp_path, {"router": router, "retry": {"attempts": 2, "initial_s": 0}}
    ) as srv:
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            raw = c.chat.completions.with_raw_response.create(model="auto", messages=ask("hello there"))
    assert raw.parse().model == f"{tag}/backup" and raw.headers["x-llmrouter-fallbacks"] == "1"
    assert local_upstream.calls(f"{tag}/primary") == 2  # retried once (500 is retryable), then fell back


def wait_for(read, wanted, timeout: float = 10.0):
    """Poll ``read()`` until it returns ``wanted`` (outcomes are written just after the answer)."""
    deadline = time.monotonic() + timeout
    while (value := read()) != wanted and time.monotonic() < deadline:
        time.sleep(0.02)
    return value


def test_the_breaker_opens_after_n_failures_and_half_opens_after_the_cooldown_for_two_processes(
    redis_url, local_upstream, tmp_path
):
    tag = f"br{uuid.uuid4().hex[:6]}"
    model = f"{tag}/flaky"
    cooldown_s = 3
    settings = {"breaker": {"failures": 3, "cooldown_s": cooldown_s, "successes": 1}, "retry": {"attempts": 1}}
    local_upstream.control(model=model, fail=3, status=503)
    store = redis.Redis.from_url(redis_url)
    key = f"llmrouter:breaker:{{{model}}}"
    with (
        gateway(redis_url, local_upstream.url, tmp_path, settings) as a,
        gateway(redis_url, local_upstream.url, tmp_path, settings) as b,
    ):
        with openai.OpenAI(base_url=a.v1, api_key="none", max_retries=0) as ca:
            for _ in range(3):
                with pytest.raises(openai.APIStatusError):
                    ca.chat.completions.create(model=model, messages=ask("x"))
        assert wait_for(lambda: store.hget(key, "state"), b"open") == b"open"
        opened_s = int(store.hget(key, "opened_ms")) / 1000
        # A passthrough model is listed by the gateways of the router that served it (B has a router of its own).
        assert wait_for(lambda: a.get("/stats").json()["models"].get(model, {}).get("breaker"), "open") == "open"
        assert a.get("/stats").json()["models"][model]["failures"] == 3
        assert b.get("/stats").json()["models"].get(model) is None
        calls = local_upstream.calls(model)
        with openai.OpenAI(base_url=b.v1, api_key="none", max_retries=0) as cb:
            with pytest.raises(openai.InternalServerError) as caught:  # 503: B sees A's breaker, calls nothing
                cb.chat.completions.create(model=model, messages=ask("x"))
            refused_s = time.time()
            assert refused_s - opened_s < cooldown_s, "the machine stalled past the cooldown: nothing was tested"
            assert caught.value.status_code == 503 and caught.value.body["code"] == "circuit_open"
            assert 1 <= int(caught.value.response.headers["retry-after"]) <= cooldown_s
            assert local_upstream.calls(model) == calls
            time.sleep(max(0.0, opened_s + cooldown_s + 0.1 - time.time()))  # cooldown over: half-open
            assert cb.chat.completions.create(model=model, messages=ask("x")).model == model  # one success closes it
        assert wait_for(lambda: store.hget(key, "state"), b"closed") == b"closed"


@needs_libfaketime
def test_gateways_on_hosts_whose_clocks_disagree_by_minutes_time_a_breakers_cooldown_alike(
    redis_url, local_upstream, tmp_path
):
    """A breaker's cooldown is timed on Redis's clock: a host a minute ahead does not see it pass at
    once (and close it with trial calls to a failing model), a host behind does not wait a minute more."""
    tag = f"sk{uuid.uuid4().hex[:6]}"
    cooldown_s = 3
    settings = {"breaker": {"failures": 3, "cooldown_s": cooldown_s, "successes": 1}, "retry": {"attempts": 1}}
    store = redis.Redis.from_url(redis_url)

    def trip(client: openai.OpenAI, model: str) -> float:
        """Fail ``model`` until its breaker opens; when it opened (Redis's clock, the one this process has)."""
        local_upstream.control(model=model, fail=3, status=503)
        for _ in range(3):
            with pytest.raises(openai.APIStatusError):
                client.chat.completions.create(model=model, messages=ask("x"))
        key = f"llmrouter:breaker:{{{model}}}"
        assert wait_for(lambda: store.hget(key, "state"), b"open") == b"open"
        return int(store.hget(key, "opened_ms")) / 1000

    with (
        gateway(redis_url, local_upstream.url, tmp_path, settings, env=clock_shifted("+60s")) as ahead,
        gateway(redis_url, local_upstream.url, tmp_path, settings, env=clock_shifted("-60s")) as behind,
        openai.OpenAI(base_url=ahead.v1, api_key="none", max_retries=0) as early,
        openai.OpenAI(base_url=behind.v1, api_key="none", max_retries=0) as late,
    ):
        model = f"{tag}/opened-behind"
        opened_s = trip(late, model)
        calls = local_upstream.calls(model)
        try:  # 60 s ahead, its cooldown has not passed
            answer: object = early.chat.completions.create(model=model, messages=ask("x")).model
        except openai.APIStatusError as exc:
            answer = (exc.status_code, exc.body["code"])
        assert time.time() - opened_s < cooldown_s, "the machine stalled past the cooldown: nothing was tested"
        assert answer == (503, "circuit_open")
        assert local_upstream.calls(model) == calls

        model = f"{tag}/opened-ahead"
        opened_s = trip(early, model)
        calls = local_upstream.calls(model)
        time.sleep(max(0.0, opened_s + cooldown_s + 0.3 - time.time()))  # the cooldown is over everywhere
        assert late.chat.completions.create(model=model, messages=ask("x")).model == model  # 60 s behind, too
        assert local_upstream.calls(model) == calls + 1


def test_a_redis_user_denied_time_and_module_list_is_served_with_breakers_on_the_process_clock(
    redis_url, local_upstream, tmp_path
):
    """Managed Redis ACLs may refuse TIME (and MODULE LIST): the gateway starts, routes, and times
    its breakers on its own clock instead."""
    model = f"nt{uuid.uuid4().hex[:6]}/down"
    local_upstream.control(model=model, fail=1, status=503)
    settings = {"breaker": {"failures": 1, "cooldown_s": 30}, "retry": {"attempts": 1}}
    store = redis.Redis.from_url(redis_url)
    with redis_user(redis_url, "+@all", "-time", "-module") as url:
        with pytest.raises(redis.exceptions.NoPermissionError):
            redis.Redis.from_url(url).time()
        with (
            gateway(url, local_upstream.url, tmp_path, settings) as srv,
            openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as client,
        ):
            assert client.chat.completions.create(model="auto", messages=ask("hello there")).choices
            with pytest.raises(openai.APIStatusError) as failed:
                client.chat.completions.create(model=model, messages=ask("x"))
            assert failed.value.body["code"] != "circuit_open"
            key = f"llmrouter:breaker:{{{model}}}"
            assert wait_for(lambda: store.hget(key, "state"), b"open") == b"open"
            time.sleep(0.3)  # past the process's breaker cache
            with pytest.raises(openai.InternalServerError) as refused:
                client.chat.completions.create(model=model, messages=ask("x"))
            assert refused.value.body["code"] == "circuit_open"


def test_time_refused_while_the_gateway_runs_costs_it_the_shared_clock_not_its_answers(
    redis_url, local_upstream, tmp_path
):
    """An ACL changed under a running gateway: the breaker reads that carried TIME go on without it."""
    with (
        redis_user(redis_url, "+@all") as url,
        gateway(url, local_upstream.url, tmp_path) as srv,
        openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as client,
    ):
        assert client.chat.completions.create(model="auto", messages=ask("hello there")).choices
        user = urlsplit(url).username
        redis.Redis.from_url(redis_url).execute_command("ACL", "SETUSER", user, "-time")
        for _ in range(3):
            time.sleep(0.3)  # past the process's breaker cache: the states are read again
            assert client.chat.completions.create(model="auto", messages=ask("hello there")).choices
        assert srv.get("/stats").status_code == 200


def test_a_half_open_breaker_lets_one_trial_call_through_across_two_processes_and_the_rest_move_on(
    redis_url, local_upstream, tmp_path
):
    """Without the limit every request after the cooldown would wait on a model that may still be down."""
    from concurrent.futures import ThreadPoolExecutor

    tag = f"hb{uuid.uuid4().hex[:6]}"
    router = own_router(redis_url, tag)
    primary, backup = f"{tag}/primary", f"{tag}/backup"
    cooldown_s = 1.0
    settings = {
        "router": router,
        "breaker": {"failures": 1, "cooldown_s": cooldown_s, "successes": 1},
        "retry": {"attempts": 1},
    }
    local_upstream.control(model=primary, fail=1, status=500)
    store = redis.Redis.from_url(redis_url)
    with (
        gateway(redis_url, local_upstream.url, tmp_path, settings) as a,
        gateway(redis_url, local_upstream.url, tmp_path, settings) as b,
    ):
        ca = openai.OpenAI(base_url=a.v1, api_key="none", max_retries=0)
        cb = openai.OpenAI(base_url=b.v1, api_key="none", max_retries=0)
        assert ca.chat.completions.create(model="auto", messages=ask("hello there")).model == backup
        assert wait_for(lambda: store.hget(f"llmrouter:breaker:{{{primary}}}", "state"), b"open") == b"open"
        assert cb.chat.completions.create(model="auto", messages=ask("hello there")).model == backup  # warm, too
        local_upstream.control(model=primary, latency_ms=2000)  # answers again, slowly
        time.sleep(cooldown_s + 0.5)  # half-open, and both processes have read it so
        calls = local_upstream.calls(primary)

        def timed(client: openai.OpenAI, model: str) -> tuple[str, float]:
            started = time.perf_counter()
            try:
                answer = client.chat.completions.create(model=model, messages=ask("hello there")).model
            except openai.APIStatusError as exc:
                answer = f"{exc.status_code} {exc.body['code']} {exc.response.headers.get('retry-after')}"
            return answer, time.perf_counter() - started

        with ThreadPoolExecutor(8) as pool:
            trial = pool.submit(timed, ca, primary)  # passthrough: takes the one trial call
            time.sleep(0.5)
            others = [pool.submit(timed, c, "auto") for c in (ca, cb, ca, cb, ca, cb)]
            refused = pool.submit(timed, cb, primary)
            answers = [f.result(timeout=30) for f in others]
            assert refused.result(timeout=30)[0] == "503 circuit_open 1"
            assert trial.result(timeout=30)[0] == primary
        assert [model for model, _ in answers] == [backup] * 6, (answers, local_upstream.calls(primary) - calls)
        assert max(elapsed for _, elapsed in answers) < 1.5  # none waited on the trial (2 s)
        assert local_upstream.calls(primary) == calls + 1
        assert wait_for(lambda: store.hget(f"llmrouter:breaker:{{{primary}}}", "state"), b"closed") == b"closed"
        ca.close()
        cb.close()


def test_a_timeout_is_retried(redis_url, local_upstream, tmp_path):
    model = f"to{uuid.uuid4().hex[:6]}/slow-once"
    local_upstream.control(model=model, hang_s=5, slow=1)
    config = {"retry": {"attempts": 2, "initial_s": 0}}
    with gateway(redis_url, local_upstream.url, tmp_path, config) as srv:
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            started = time.perf_counter()
            answer = c.chat.completions.create(model=model, messages=ask("hi"), extra_body={"timeout": 0.5})
            elapsed = time.perf_counter() - started
    assert answer.model == model and 0.5 <= elapsed < 4
    assert local_upstream.calls(model) == 2


def test_upstream_refusals_of_the_gateway_are_502_and_rate_limits_everywhere_are_429(
    redis_url, local_upstream, tmp_path
):
    tag = f"rf{uuid.uuid4().hex[:6]}"
    local_upstream.control(model=f"{tag}/locked", fail=100, status=401)
    local_upstream.control(model=f"{tag}/busy", fail=100, status=429)
    with gateway(redis_url, local_upstream.url, tmp_path, {"retry": {"attempts": 1}}) as srv:
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            # the client's key is fine: the upstream refused the gateway's, which is the gateway's problem
            with pytest.raises(openai.APIStatusError) as refused:
                c.chat.completions.create(model=f"{tag}/locked", messages=ask("hi"))
            assert refused.value.status_code == 502 and refused.value.body["code"] == "all_models_failed"
            with pytest.raises(openai.RateLimitError) as limited:
                c.chat.completions.create(model=f"{tag}/busy", messages=ask("hi"))
            assert limited.value.body["code"] == "rate_limited"
            assert int(limited.value.response.headers["retry-after"]) >= 1


def test_a_providers_retry_after_is_waited_for_or_if_longer_than_any_backoff_not_retried(
    redis_url, local_upstream, tmp_path
):
    # Retried 50 ms later regardless: three calls into a rate limit that had asked for 7 s.
    tag = f"ra{uuid.uuid4().hex[:6]}"
    local_upstream.control(model=f"{tag}/soon", fail=1, status=429, retry_after=1)
    local_upstream.control(model=f"{tag}/later", fail=1, status=429, retry_after=30)
    settings = {"retry": {"attempts": 3, "initial_s": 0, "max_s": 2, "jitter_s": 0}, "breaker": {"failures": 100}}
    with gateway(redis_url, local_upstream.url, tmp_path, settings) as srv:
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            started = time.monotonic()
            assert c.chat.completions.create(model=f"{tag}/soon", messages=ask("hi")).model == f"{tag}/soon"
            assert time.monotonic() - started >= 1.0  # the second call waited as the provider asked
            with pytest.raises(openai.RateLimitError) as limited:  # 30 s > max_s: the client decides
                c.chat.completions.create(model=f"{tag}/later", messages=ask("hi"))
            assert limited.value.response.headers["retry-after"] == "30"
    assert (local_upstream.calls(f"{tag}/soon"), local_upstream.calls(f"{tag}/later")) == (2, 1)


def test_a_request_the_upstream_refuses_is_the_clients_error_and_never_opens_the_breaker(
    redis_url, local_upstream, tmp_path
):
    model = f"rj{uuid.uuid4().hex[:6]}/strict"
    local_upstream.control(model=model, fail=4, status=400)
    store = redis.Redis.from_url(redis_url)
    settings = {"breaker": {"failures": 2}, "retry": {"attempts": 1}}
    with gateway(redis_url, local_upstream.url, tmp_path, settings) as srv:
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            for _ in range(4):
                with pytest.raises(openai.BadRequestError) as refused:
                    c.chat.completions.create(model=model, messages=ask("hi"))
                assert refused.value.body["code"] == "upstream_rejected"
                assert "injected failure" in refused.value.body["message"]  # the provider's own words
            time.sleep(0.3)
            assert store.hget(f"llmrouter:breaker:{{{model}}}", "state") in (None, b"closed")
            assert c.chat.completions.create(model=model, messages=ask("hi")).model == model
        with SemanticRouter.from_existing(srv.router, redis_url=redis_url) as router:
            live = (
                wait_for(lambda: router.live_stats([model])[model].successes, 1) and router.live_stats([model])[model]
            )
    # nor the live statistics every process routes by: one success, no failure, nothing left in flight
    assert (live.successes, live.failures, live.inflight) == (1, 0, 0)


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"model": "m", "messages": ask("hi"), "stream": True, "stream_options": "yes"}).encode(),
        b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe"}]}',  # not UTF-8
        json.dumps({"model": "m", "messages": ask("hi"), "n": 0}).encode(),
        json.dumps({"model": "m", "messages": ask("hi"), "n": 1.5}).encode(),
    ],
)
def test_the_local_upstream_answers_a_malformed_body_with_a_400_not_a_crash(local_upstream, body):
    response = httpx.post(f"{local_upstream.url}/chat/completions", content=body, timeout=10)
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


def test_the_local_upstream_refuses_a_malformed_message_part_as_a_provider_does(local_upstream):
    # The gateway refuses this body itself (see the malformed requests above); its upstream must too, with a
    # 400: a crash (500) would be retried and trip the breaker.
    messages = [{"role": "user", "content": [{"type": "text", "text": ["not", "a", "string"]}]}, *ask("hi")]
    response = httpx.post(
        f"{local_upstream.url}/chat/completions", json={"model": "m", "messages": messages}, timeout=10
    )
    assert response.status_code == 400 and "text is a string" in response.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_the_local_upstream_says_length_when_max_tokens_cut_the_answer_as_openai_does(client, stream):
    """Through the gateway: an answer cut by ``max_tokens`` ended with ``finish_reason`` "stop"."""

    def finish(max_tokens: int) -> str | None:
        made = client.chat.completions.create(
            model="t/m", messages=ask("one two three four"), max_tokens=max_tokens, stream=stream
        )
        return [c for c in made][-1].choices[0].finish_reason if stream else made.choices[0].finish_reason

    assert (finish(2), finish(50)) == ("length", "stop")


def test_a_routed_request_the_provider_refuses_is_not_sent_to_the_fallbacks_but_a_missing_model_is(redis_url, tmp_path):
    chosen = "openai/gpt-4.1-nano"  # what the default router picks for a greeting
    with upstream() as up, gateway(redis_url, up.url, tmp_path, {"retry": {"attempts": 1}}) as srv:
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            up.control(model=chosen, fail=1, status=400)
            with pytest.raises(openai.BadRequestError) as refused:
                c.chat.completions.create(model="auto", messages=ask("hi there"))
            assert refused.value.body["code"] == "upstream_rejected"
            calls = httpx.get(f"{up.root}/control", timeout=5).json()["counts"]
            assert {m: n["calls"] for m, n in calls.items()} == {chosen: 1}  # billed once, no fallback tried
            up.control(model=chosen, fail=1, status=404)  # this provider lacks the model: the next one answers
            answer = c.chat.completions.with_raw_response.create(model="auto", messages=ask("hi there"))
            assert answer.parse().model != chosen and answer.headers["x-llmrouter-fallbacks"] == "1"


def test_a_refusal_after_a_failure_is_the_clients_error_in_the_providers_words(redis_url, tmp_path):
    """The chosen model fails (500), its fallback refuses the request (400): the refusal, with the provider's
    code, param and whole message, is what the client can act on. It was a 502 naming only the status,
    which the openai client retries."""
    chosen = "openai/gpt-4.1-nano"  # what the default router picks for a greeting
    reason = "This model's maximum context length is 8192 tokens. " + "x" * 600 + " (the end)"
    with upstream() as up, gateway(redis_url, up.url, tmp_path, {"retry": {"attempts": 1}}) as srv:
        up.control(model="*", fail=1, status=400, message=reason, code="context_length_exceeded", param="messages")
        up.control(model=chosen, fail=1, status=500)
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            with pytest.raises(openai.BadRequestError) as refused:
                c.chat.completions.create(model="auto", messages=ask("hi there"))
    body = refused.value.body
    assert (body["code"], body["param"]) == ("context_length_exceeded", "messages")
    assert body["type"] == "invalid_request_error"
    assert reason in body["message"] and f"{chosen}: server" in body["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_provider_that_says_when_to_come_back_is_quoted_to_the_client(redis_url, local_upstream, tmp_path, stream):
    model = f"ra{uuid.uuid4().hex[:6]}/busy"
    local_upstream.control(model=model, fail=2, status=503, retry_after=30)  # longer than retry.max_s
    with gateway(redis_url, local_upstream.url, tmp_path, {"retry": {"attempts": 2}}) as srv:
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            with pytest.raises(openai.InternalServerError) as failed:
                c.chat.completions.create(model=model, messages=ask("hi"), stream=stream)
    assert failed.value.status_code == 502 and failed.value.response.headers["retry-after"] == "30"
    assert local_upstream.calls(model) == 1  # not waited for: 30 s is the client's to wait


def test_with_every_breaker_open_auto_is_a_503_to_retry_and_still_a_logged_request(redis_url, local_upstream, tmp_path):
    tag = f"ab{uuid.uuid4().hex[:6]}"
    router = own_router(redis_url, tag)
    for model in (f"{tag}/primary", f"{tag}/backup"):
        local_upstream.control(model=model, fail=100, status=500)
    config = {"router": router, "breaker": {"failures": 1, "cooldown_s": 60}, "retry": {"attempts": 1}}
    with gateway(redis_url, local_upstream.url, tmp_path, config) as srv:
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            with pytest.raises(openai.APIStatusError) as failed:
                c.chat.completions.create(model="auto", messages=ask("hello there"))
            assert failed.value.status_code == 502
            time.sleep(0.3)  # the breakers are written just after the answer
            with pytest.raises(openai.APIStatusError) as refused:
                c.chat.completions.create(model="auto", messages=ask("hello there"))
            assert refused.value.status_code == 503 and refused.value.body["code"] == "circuit_open"
            assert refused.value.response.headers["retry-after"] == "60"
        assert srv.post("/v1/route", json={"text": "hello there"}).status_code == 503
        time.sleep(0.3)
        metrics = srv.get("/metrics").text
    errors = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("llmrouter_requests_total{") and 'status="error"' in line  # this gateway's only
    )
    assert errors == 2.0  # the refused request is counted (and logged) like the failed one


def test_when_the_only_models_a_request_can_use_have_open_breakers_it_is_a_503_not_a_400(
    redis_url, local_upstream, tmp_path
):
    # With the backup still closed, "no eligible model" was a 400 the client never retries, though the
    # request was fine: only the cheap model meets its max_cost, and its breaker was open.
    tag = f"ob{uuid.uuid4().hex[:6]}"
    router = own_router(redis_url, tag)
    local_upstream.control(model=f"{tag}/primary", fail=100, status=500)
    config = {"router": router, "breaker": {"failures": 1, "cooldown_s": 60}, "retry": {"attempts": 1}}
    with gateway(redis_url, local_upstream.url, tmp_path, config) as srv:
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            cheap_only = {"extra_headers": {"x-llmrouter-max-cost": "0.0008"}}  # primary ~$0.0005, backup ~$0.001
            with pytest.raises(openai.APIStatusError) as failed:
                c.chat.completions.create(model="auto", messages=ask("hello there"), **cheap_only)
            assert failed.value.status_code == 502
            time.sleep(0.3)  # the breaker is written just after the answer
            with pytest.raises(openai.APIStatusError) as refused:
                c.chat.completions.create(model="auto", messages=ask("hello there"), **cheap_only)
            assert refused.value.status_code == 503 and refused.value.body["code"] == "circuit_open"
            assert refused.value.response.headers["retry-after"] == "60"
            assert c.chat.completions.create(model="auto", messages=ask("hello there")).model == f"{tag}/backup"
            with pytest.raises(openai.BadRequestError):  # no model meets it, breakers or not: the request's fault
                c.chat.completions.create(
                    model="auto", messages=ask("hello there"), extra_headers={"x-llmrouter-max-cost": "1e-12"}
                )


def test_routers_never_share_cached_answers(redis_url, local_upstream, tmp_path):
    on = {"cache": {"enabled": True}}
    question = [{"role": "user", "content": f"explain how a TCP handshake works {uuid.uuid4().hex[:6]}"}]
    with (
        gateway(redis_url, local_upstream.url, tmp_path, on) as a,
        gateway(redis_url, local_upstream.url, tmp_path, on) as b,
    ):
        assert a.router != b.router
        # Routed, and passed through (the same model name may go to different deployments per router).
        for model in ("auto", "openai/gpt-4.1-mini"):
            for srv, expected in ((a, "miss"), (a, "hit"), (b, "miss")):
                with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
                    raw = c.chat.completions.with_raw_response.create(model=model, messages=question, temperature=0)
                    assert raw.headers["x-llmrouter-cache"] == expected, (model, srv.router)
                time.sleep(0.2)  # the entry is stored just after the answer


# A cut-off body was a 502 "error" at once, not retried, while a 200 without choices was.
@pytest.mark.parametrize("fault", ["no_choices", "cut_json"])
def test_an_answer_that_is_no_answer_is_not_passed_on_but_retried(redis_url, local_upstream, tmp_path, fault):
    model = f"nc{uuid.uuid4().hex[:6]}/sloppy"
    local_upstream.control(model=model, **{fault: 1})
    with gateway(redis_url, local_upstream.url, tmp_path, {"retry": {"attempts": 2, "initial_s": 0}}) as srv:
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            answer = c.chat.completions.create(model=model, messages=ask("hi"))
    assert answer.choices[0].message.content == f"[{model}] hi"
    assert local_upstream.calls(model) == 2


@pytest.mark.parametrize("long_key", [False, True])
def test_a_provider_error_that_repeats_the_upstream_key_reaches_the_client_masked(redis_url, tmp_path, long_key):
    # A long key (OpenAI's project keys run to ~170 characters) far into the message: the message is cut
    # short for the client, and a key cut at the edge no longer matched the mask, so its head showed.
    key = f"sk-proj-{uuid.uuid4().hex * 5}" if long_key else f"sk-test-{uuid.uuid4().hex}"
    pad = "p" * 140 if long_key else ""
    model = f"ek{uuid.uuid4().hex[:6]}/echo"
    config = {"upstream_api_key_env": "LLMROUTER_TEST_UPSTREAM_KEY", "retry": {"attempts": 1}}
    with upstream(api_key=key) as up, gateway(redis_url, up.url, tmp_path, config,
                                              env={"LLMROUTER_TEST_UPSTREAM_KEY": key}) as srv:  # fmt: skip
        up.control(model=model, fail=1, status=400, message=f"{pad}bad request made with key {key}")
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            with pytest.raises(openai.BadRequestError) as refused:
                c.chat.completions.create(model=model, messages=ask("hi"))
        time.sleep(0.3)  # the request is logged just after the answer
        log = output(srv.proc)
    message = refused.value.body["message"]
    assert key[:24] not in message and "bad request made with key ***" in message
    assert key[:24] not in log


@pytest.mark.parametrize(("kind", "retried"), [("server_error", True), ("invalid_request_error", False)])
def test_an_error_event_before_the_first_chunk_is_retried_when_it_is_a_server_error(
    client, local_upstream, kind, retried
):
    """A provider answering a failure over SSE (a 200 whose first event is an error) was never retried,
    as a 5xx is: a passthrough stream ended in a 502 after one attempt."""
    model = f"ee{uuid.uuid4().hex[:6]}/flaky"
    local_upstream.control(model=model, error_event=1, error_type=kind)
    try:
        chunks = list(client.chat.completions.create(model=model, messages=ask("tell me more"), stream=True))
    except openai.APIStatusError as exc:
        chunks, status = [], exc.status_code
    else:
        status = 200
    assert (status, local_upstream.calls(model)) == ((200, 2) if retried else (502, 1))
    assert bool(chunks) == retried


def test_a_stream_broken_midway_ends_in_band_is_counted_and_trips_the_breaker(redis_url, local_upstream, tmp_path):
    model = f"bs{uuid.uuid4().hex[:6]}/fragile"
    local_upstream.control(model=model, break_stream=2)
    settings = {"breaker": {"failures": 2, "cooldown_s": 60}, "retry": {"attempts": 1}}
    store = redis.Redis.from_url(redis_url)
    with gateway(redis_url, local_upstream.url, tmp_path, settings) as srv:
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            for _ in range(2):
                received = []
                with pytest.raises(openai.APIError, match="injected stream failure") as failed:
                    for chunk in c.chat.completions.create(model=model, messages=ask("tell me more"), stream=True):
                        received.append(chunk)
                assert received  # the answer had started: the error comes in the stream
                assert set(failed.value.body) == {"message", "type", "param", "code"}  # as the HTTP errors
        key = f"llmrouter:breaker:{{{model}}}"
        assert wait_for(lambda: store.hget(key, "state"), b"open") == b"open"
        metrics = srv.get("/metrics").text
        with SemanticRouter.from_existing(srv.router, redis_url=redis_url) as router:
            live = router.live_stats([model])[model]  # the live statistics agree: two failures
    errors = [line for line in metrics.splitlines() if line.startswith("llmrouter_requests_total{") and model in line]
    assert errors and all('status="error"' in line and 'route="passthrough"' in line for line in errors)
    assert float(errors[0].rsplit(" ", 1)[1]) == 2.0
    assert (live.successes, live.failures, live.inflight) == (0, 2, 0)
    # Two failed calls, in /metrics too: no successful call's latency, and a documented reason.
    assert f'llmrouter_upstream_latency_seconds_count{{model="{model}"}}' not in metrics
    assert f'llmrouter_upstream_errors_total{{model="{model}",reason="server"}} 2.0' in metrics
    logged = [e for e in parse_entries(store.xrange(stream_key(srv.router))) if e["model"] == model]
    assert [(e["error"], e["attempts"]) for e in logged] == [("stream_interrupted", 1)] * 2  # one call each


def test_a_stream_the_provider_ends_midway_is_an_error_and_is_never_cached(redis_url, local_upstream, tmp_path):
    """A provider (or a proxy) closing the stream cleanly before any finish_reason: the answer is cut.
    It was relayed as if whole, logged ok, counted a success, cached, and served from the cache with
    finish_reason "stop" to every later request like it."""
    model = f"es{uuid.uuid4().hex[:6]}/cut"
    local_upstream.control(model=model, end_stream=1)
    store = redis.Redis.from_url(redis_url)
    question = ask(f"list the planets {uuid.uuid4().hex[:6]}")
    settings = {"cache": {"enabled": True}, "retry": {"attempts": 1}}
    with gateway(redis_url, local_upstream.url, tmp_path, settings) as srv:
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            received = []
            with pytest.raises(openai.APIError, match="ended before the answer finished"):
                for chunk in c.chat.completions.create(model=model, messages=question, stream=True, temperature=0):
                    received.append(chunk)
            assert received and all(ch.choices[0].finish_reason is None for ch in received if ch.choices)
            time.sleep(0.3)  # an answer would be stored just after it
            again = c.chat.completions.with_raw_response.create(model=model, messages=question, temperature=0)
        with SemanticRouter.from_existing(srv.router, redis_url=redis_url) as router:
            live = wait_for(lambda: router.live_stats([model])[model].failures, 1) and router.live_stats([model])
    assert again.headers["x-llmrouter-cache"] == "miss"
    assert again.parse().choices[0].message.content == f"[{model}] {question[0]['content']}"
    assert (live[model].successes, live[model].failures) == (1, 1)  # the cut stream failed; the retry answered
    logged = [e for e in parse_entries(store.xrange(stream_key(srv.router))) if e["model"] == model]
    assert [(e["status"], e.get("error")) for e in logged] == [("error", "stream_interrupted"), ("ok", None)]


def test_a_client_leaving_mid_stream_ends_the_providers_call_and_is_logged(redis_url, local_upstream, tmp_path):
    model = f"cut{uuid.uuid4().hex[:6]}/slow"
    local_upstream.control(model=model, chunk_delay_ms=50)  # 40 words: a 2 s stream
    store = redis.Redis.from_url(redis_url)
    with gateway(redis_url, local_upstream.url, tmp_path) as srv:
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            stream = c.chat.completions.create(model=model, messages=ask(" ".join(["word"] * 40)), stream=True)
            received = [next(iter(stream)) for _ in range(2)]
            stream.close()
        cut = wait_for(lambda: httpx.get(f"{local_upstream.root}/control").json()["counts"][model].get("cut"), 1)
        key, deadline = stream_key(srv.router), time.monotonic() + 10
        while not (entries := [e for e in parse_entries(store.xrange(key)) if e["model"] == model]):
            assert time.monotonic() < deadline, "the request was never logged"
            time.sleep(0.05)
        with SemanticRouter.from_existing(srv.router, redis_url=redis_url) as router:
            live = wait_for(lambda: router.live_stats([model])[model].inflight, 0) == 0 and router.live_stats([model])
    assert len(received) == 2 and cut == 1 and len(entries) == 1
    assert (entries[0]["status"], entries[0]["error"]) == ("error", "client_closed")
    # A client that leaves says nothing about the model: neither a success nor a failure it is routed by.
    assert live and (live[model].requests, live[model].inflight) == (0, 0)


@pytest.mark.parametrize("include_usage", [False, True], ids=["usage-not-asked", "usage-asked"])
def test_a_client_that_stops_at_the_finish_reason_had_an_answer_and_it_is_accounted(
    redis_url, local_upstream, tmp_path, include_usage
):
    """Stopping at finish_reason is common. The usage chunk comes after it: a client gone by then was
    logged as client_closed, with no tokens or cost, though the provider billed the whole answer."""
    model = f"fin{uuid.uuid4().hex[:6]}/slow"
    local_upstream.control(model=model, chunk_delay_ms=300)  # the usage chunk comes 300 ms after the finish
    store = redis.Redis.from_url(redis_url)
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    with gateway(redis_url, local_upstream.url, tmp_path) as srv:
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            stream = c.chat.completions.create(model=model, messages=ask("w1 w2 w3"), stream=True, **options)
            text = ""
            for chunk in stream:
                text += chunk.choices[0].delta.content or ""
                if chunk.choices[0].finish_reason:
                    break
            stream.close()
        key, deadline = stream_key(srv.router), time.monotonic() + 10
        while not (entries := [e for e in parse_entries(store.xrange(key)) if e["model"] == model]):
            assert time.monotonic() < deadline, "the request was never logged"
            time.sleep(0.05)
        with SemanticRouter.from_existing(srv.router, redis_url=redis_url) as router:
            live = wait_for(lambda: router.live_stats([model])[model].successes, 1) and router.live_stats([model])
        time.sleep(0.5)  # a second entry (client_closed, as well) would be written by now
        entries = [e for e in parse_entries(store.xrange(key)) if e["model"] == model]
    assert text == f"[{model}] w1 w2 w3" and len(entries) == 1
    assert (entries[0]["status"], entries[0].get("error")) == ("ok", None)
    assert (entries[0]["prompt_tokens"], entries[0]["completion_tokens"]) == (3, 4)  # the provider's usage
    assert live and (live[model].successes, live[model].failures, live[model].inflight) == (1, 0, 0)


def test_a_gateway_on_the_embedded_redis_starts_it_again_when_it_dies(local_upstream):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LLMROUTER_DATA_DIR")}
    proc = launch([LLMROUTER, "serve", "--port", str(port), "--upstream", local_upstream.url], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/health", proc)
        redis_port = int(re.search(r"Redis redis://127\.0\.0\.1:(\d+)", output(proc)).group(1))
        first = redis.Redis(port=redis_port).info("server")["run_id"]
        with contextlib.suppress(redis.ConnectionError):  # the server is gone before it can answer
            redis.Redis(port=redis_port).shutdown(nosave=True)

        def server_id() -> str | None:
            with contextlib.suppress(redis.ConnectionError):
                return str(redis.Redis(port=redis_port).info("server")["run_id"])
            return None

        assert wait_for(lambda: server_id() not in (None, first), True)  # a new server on the same port
        healthy = lambda: httpx.get(f"{base}/health", timeout=5).status_code  # noqa: E731
        assert wait_for(healthy, 200) == 200
        with openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0) as c:
            answer = c.chat.completions.create(model="auto", messages=ask("prove there are infinitely many primes"))
        assert answer.model == "anthropic/claude-opus-4-5"  # the router rebuilt itself on the new server
        assert "started again on port" in output(proc)
    finally:
        stop(proc)


def test_every_request_ends_answered_or_with_a_clear_error_and_the_counts_add_up(redis_url, local_upstream, tmp_path):
    tag = f"ct{uuid.uuid4().hex[:6]}"
    router = own_router(redis_url, tag)
    local_upstream.control(model=f"{tag}/primary", fail_rate=0.5, seed=7, status=500)
    local_upstream.control(model=f"{tag}/backup", fail_rate=0.3, seed=11, status=502)
    config = {"router": router, "retry": {"attempts": 1}, "breaker": {"failures": 1000}}
    with gateway(redis_url, local_upstream.url, tmp_path, config) as srv:

        async def run() -> list:
            async with openai.AsyncOpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:

                async def one(i: int) -> str:
                    try:
                        raw = await c.chat.completions.with_raw_response.create(
                            model="auto", messages=ask(f"hello {i}")
                        )
                        return raw.headers["x-llmrouter-model"]
                    except openai.APIStatusError as exc:
                        assert exc.status_code == 502 and exc.body["code"] == "all_models_failed"
                        return "error"

                return await asyncio.gather(*(one(i) for i in range(100)))

        outcomes = asyncio.run(run())
        time.sleep(0.5)
        stats = srv.get("/stats").json()["models"]
    primary, backup = f"{tag}/primary", f"{tag}/backup"
    answered = {m: outcomes.count(m) for m in (primary, backup)}
    errors = outcomes.count("error")
    assert answered[primary] + answered[backup] + errors == 100 and errors > 0 and answered[backup] > 0
    # Every request called the primary once; those it failed went to the backup once.
    assert local_upstream.calls(primary) == 100
    assert local_upstream.calls(backup) == 100 - answered[primary]
    assert stats[primary]["requests"] == 100 and stats[primary]["successes"] == answered[primary]
    assert stats[backup]["requests"] == 100 - answered[primary] and stats[backup]["failures"] == errors
    # The log has every request, failed ones with how long the client waited and what was asked.
    log = redis.Redis.from_url(redis_url).xrange(f"llmrouter:{{{router}}}:decisions")
    failed = [e for e in (json.loads(f[b"d"]) for _, f in log) if e["type"] == "completion" and e["status"] == "error"]
    assert len(failed) == errors
    assert all(e["latency_ms"] > 0 and e.get("text_sha256") for e in failed)


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
def test_a_request_whose_client_left_is_never_sent_and_is_logged_as_client_closed(
    redis_url, local_upstream, tmp_path, stream
):
    """Under load clients time out: what they no longer wait for must not be sent to (and billed by) a provider."""
    model = f"q{uuid.uuid4().hex[:6]}/slow"
    local_upstream.control(model=model, latency_ms=1500)
    with gateway(redis_url, local_upstream.url, tmp_path, {"queue": {"concurrency": 1}}) as srv:
        body = {"model": model, "messages": ask("hi")}
        first = threading.Thread(target=lambda: srv.post("/v1/chat/completions", json=body))
        first.start()  # holds the model's one slot for 1.5 s
        time.sleep(0.3)
        with pytest.raises(httpx.TimeoutException):  # this client gives up while its request waits in the queue
            httpx.post(f"{srv.v1}/chat/completions", json={**body, "stream": stream}, timeout=0.3)
        first.join()
        time.sleep(0.5)
        assert local_upstream.calls(model) == 1  # the request nobody waited for was never sent
        store = redis.Redis.from_url(redis_url)
        logged = [e for e in parse_entries(store.xrange(stream_key(srv.router))) if e["model"] == model]
        assert sorted((e["status"], e.get("error")) for e in logged) == [("error", "client_closed"), ("ok", None)]
        assert srv.get("/stats").json()["models"][model]["queue_depth"] == 0


def test_a_client_leaving_while_it_sends_its_body_is_let_go_quietly(redis_url, local_upstream, tmp_path):
    """Each one was an "unexpected gateway error" and two tracebacks in the server's log."""
    with gateway(redis_url, local_upstream.url, tmp_path) as srv:
        port = int(srv.base.rsplit(":", 1)[1])
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port)) as half:
                half.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"content-type: application/json\r\ncontent-length: 200\r\n\r\n{\"model\": \"auto\", \"mess")  # fmt: skip
                time.sleep(0.05)
        time.sleep(0.3)
        answered = srv.post("/v1/chat/completions", json={"model": "auto", "messages": ask("hi")})
        log = output(srv.proc)
    assert answered.status_code == 200
    assert "ClientDisconnect" not in log and "Traceback" not in log  # (a traceback ends with its exception)


def test_a_router_cleared_while_serving_is_a_503_to_retry_not_the_clients_error(redis_url, local_upstream, tmp_path):
    """It was a 400 with the code ``config``: a client does not retry a 400, and the request was fine."""
    with gateway(redis_url, local_upstream.url, tmp_path) as srv:
        with SemanticRouter.from_existing(srv.router, redis_url=redis_url) as router:
            router.clear()
        time.sleep(1.2)  # longer than the gateway's check for changes (ROUTER_REFRESH_S)
        refused = srv.post("/v1/chat/completions", json={"model": "auto", "messages": ask("hi")})
    assert (refused.status_code, refused.headers.get("retry-after")) == (503, "1")
    assert refused.json()["error"]["code"] == "router_empty"


def test_a_router_recreated_with_other_vectors_fails_routing_and_health_clearly_until_it_fits_again(
    redis_url, local_upstream, tmp_path
):
    """Its searches failed on every routed request (500 "unexpected gateway error") while ``/health`` said
    ok, so nothing restarted the gateway: now routed requests are a 503 saying why, passthrough goes on,
    ``/health`` is a 503, and a router recreated as the gateway can route on it again is simply adopted."""
    from redisvl_llmrouter import MiniLMVectorizer

    only = [Route(name="only", model="openai/gpt-4.1-nano", references=["hello there"], distance_threshold=0.9)]
    with gateway(redis_url, local_upstream.url, tmp_path) as srv:
        half = MiniLMVectorizer(dtype="float16")
        with SemanticRouter(srv.router, routes=only, vectorizer=half, redis_url=redis_url, overwrite=True):
            time.sleep(1.2)  # longer than the gateway's check for changes (ROUTER_REFRESH_S)
        routed = srv.post("/v1/chat/completions", json={"model": "auto", "messages": ask("hello there")})
        passed = srv.post("/v1/chat/completions", json={"model": "openai/gpt-4.1-nano", "messages": ask("hi")})
        health = srv.get("/health")
        with SemanticRouter(srv.router, routes=only, redis_url=redis_url, overwrite=True) as router:  # its vectors
            time.sleep(1.2)
            healthy = srv.get("/health")  # checks for the change itself: no routed request came since
            again = srv.post("/v1/chat/completions", json={"model": "auto", "messages": ask("hello there")})
            router.delete()
        log = output(srv.proc)
    assert (routed.status_code, routed.json()["error"]["code"]) == (503, "router_recreated")
    assert "dtype: stored 'float16'" in routed.json()["error"]["message"]
    assert passed.status_code == 200
    assert (health.status_code, health.json()["router_state"]) == (503, "recreated")
    assert (again.status_code, again.headers["x-llmrouter-route"]) == (200, "only")
    assert (healthy.status_code, healthy.json()) == (200, {"status": "ok", "router": srv.router, "redis": "ok"})
    assert log.count("was recreated with vectors this process does not make") == 1  # said once, not per request


def test_a_full_queue_answers_429_with_retry_after_and_critical_requests_go_first(redis_url, local_upstream, tmp_path):
    model = f"q{uuid.uuid4().hex[:6]}/busy"
    local_upstream.control(model=model, latency_ms=400)
    config = {"queue": {"concurrency": 1, "depth": 2, "wait_timeout_s": 10}}
    with gateway(redis_url, local_upstream.url, tmp_path, config) as srv:

        async def run() -> dict:
            async with openai.AsyncOpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
                finished: list[str] = []

                async def one(tag: str, priority: str, delay: float) -> str:
                    await asyncio.sleep(delay)
                    try:
                        await c.chat.completions.create(
                            model=model, messages=ask(tag), extra_body={"priority": priority}
                        )
                        finished.append(tag)
                        return "ok"
                    except openai.RateLimitError as exc:
                        assert exc.response.headers["retry-after"] == "1"
                        return "429"

                # One runs, two low ones wait; a critical one then sheds a low one and runs next.
                results = await asyncio.gather(
                    one("first", "normal", 0),
                    one("low-1", "low", 0.1),
                    one("low-2", "low", 0.15),
                    one("low-3", "low", 0.2),
                    one("critical", "critical", 0.25),
                )
                return {"results": results, "order": finished}

        out = asyncio.run(run())
        time.sleep(0.3)  # the log is written just after each answer
        metrics = srv.get("/metrics").text
    assert out["results"].count("429") == 2  # low-3 refused (queue full), then low-2 shed by the critical one
    assert out["order"][:2] == ["first", "critical"]
    counted = {  # refusals are requests too: counted as errors, as in the decisions log
        line.rsplit(" ", 1)[0].split('status="')[1].rstrip('"}'): float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("llmrouter_requests_total{") and model in line
    }
    assert counted == {"ok": 3.0, "error": 2.0}
    shed = [line for line in metrics.splitlines() if line.startswith("llmrouter_queue_depth{") and model in line]
    assert shed and float(shed[0].rsplit(" ", 1)[1]) == 0.0  # the gauges follow the queue, not only scrapes


def test_the_semantic_cache_answers_repeats_without_calling_and_never_crosses_scopes(
    redis_url, local_upstream, tmp_path
):
    model = f"c{uuid.uuid4().hex[:6]}/cached"
    on = {"cache": {"enabled": True}}
    with gateway(redis_url, local_upstream.url, tmp_path, on, env={"LLMROUTER_API_KEYS": "alice,bob"}) as srv:
        with (
            openai.OpenAI(base_url=srv.v1, api_key="alice", max_retries=0) as alice,
            openai.OpenAI(base_url=srv.v1, api_key="bob", max_retries=0) as bob,
        ):

            def cache_header(c, text, to=model, **kw):
                messages = text if isinstance(text, list) else ask(text)
                raw = c.chat.completions.with_raw_response.create(model=to, messages=messages, **kw)
                time.sleep(0.2)  # the entry is stored just after the answer
                return raw.headers["x-llmrouter-cache"]

            assert cache_header(alice, "what is the capital of France?", temperature=0) == "miss"
            calls = local_upstream.calls(model)
            assert cache_header(alice, "what is the capital of France?", temperature=0) == "hit"
            assert cache_header(alice, "What is the capital of France", temperature=0) == "hit"  # a near repeat
            assert local_upstream.calls(model) == calls
            assert cache_header(bob, "what is the capital of France?", temperature=0) == "miss"  # another tenant
            assert cache_header(alice, "what is the capital of France?", temperature=0.7) == "bypass"
            assert cache_header(alice, "what is the capital of France?", temperature=0, max_tokens=3) == "miss"
            assert (
                cache_header(
                    alice,
                    "what is the capital of France?",
                    temperature=0,
                    extra_headers={"x-llmrouter-cache": "bypass"},
                )
                == "bypass"
            )

            # what the embedding cannot see must match exactly: images, and the middle of a long message
            def picture(url):
                return [{"role": "user", "content": [
                    {"type": "text", "text": "describe this picture"}, {"type": "image_url", "image_url": {"url": url}}
                ]}]  # fmt: skip

            assert cache_header(alice, picture("https://example.com/cat.png"), temperature=0) == "miss"
            assert cache_header(alice, picture("https://example.com/cat.png"), temperature=0) == "hit"
            assert cache_header(alice, picture("https://example.com/dog.png"), temperature=0) == "miss"

            def clause(middle):  # longer than the embedded window (its head and tail)
                return "Summarise this contract clause. " * 10 + f"{middle} " * 40 + "What is owed? " * 60

            assert cache_header(alice, clause("pay ONE HUNDRED dollars"), temperature=0) == "miss"
            assert cache_header(alice, clause("pay ONE HUNDRED dollars"), temperature=0) == "hit"
            assert cache_header(alice, clause("pay NINE THOUSAND dollars"), temperature=0) == "miss"
            # and so must the routing asked for
            assert cache_header(alice, "name a prime number", to="auto", temperature=0) == "miss"
            assert cache_header(alice, "name a prime number", to="auto", temperature=0) == "hit"
            assert cache_header(alice, "name a prime number", to="auto", temperature=0, extra_body={
                "strategy": "quality"}) == "miss"  # fmt: skip

        # /metrics counts cache hits as the report does: answered, with their latency and their saving
        log = redis.Redis.from_url(redis_url).xrange(f"llmrouter:{{{srv.router}}}:decisions")
        entries = [json.loads(fields[b"d"]) for _, fields in log]
        answered = [e for e in entries if e["type"] == "completion" and e["status"] == "ok"]
        hits = [e for e in answered if e["cache"]]
        assert hits and {_route_of(e) for e in hits} == {"passthrough", "cache"}
        samples = metric_samples(srv.get("/metrics").text)
        assert sum(v for k, v in samples.items() if k.startswith("llmrouter_request_latency_seconds_count")) == len(
            answered
        )
        baseline = sum(v for k, v in samples.items() if k.startswith("llmrouter_baseline_usd_total"))
        priced = [e for e in answered if e["cost"] is not None and e["baseline_cost"] is not None]  # catalog models
        assert any(e["cache"] for e in priced)
        assert baseline == pytest.approx(sum(e["baseline_cost"] for e in priced), rel=1e-6)
        by_route = {}
        for k, v in samples.items():
            if k.startswith("llmrouter_requests_total{") and 'status="ok"' in k:
                route = k.split('route="', 1)[1].split('"', 1)[0]
                by_route[route] = by_route.get(route, 0) + v
        assert by_route.get("cache") == sum(1 for e in hits if _route_of(e) == "cache")


def test_a_cached_answer_is_an_answer_of_its_own_and_replays_what_the_provider_said(
    redis_url, local_upstream, tmp_path
):
    model = f"c{uuid.uuid4().hex[:6]}/cached"
    with (
        gateway(redis_url, local_upstream.url, tmp_path, {"cache": {"enabled": True}}) as srv,
        openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as client,
    ):

        def create(text, stream=False):
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=ask(text), temperature=0, stream=stream
            )
            answer = raw.parse()
            if stream:
                chunks = list(answer)
                delta = chunks[0].choices[0].delta
                answer = (chunks, delta)
            time.sleep(0.2)  # the entry is stored just after the answer
            return raw.headers["x-llmrouter-cache"], answer

        # A refusal streamed by the provider is kept as a refusal, not as an empty answer.
        local_upstream.control(model=model, refuse=1)
        state, (chunks, _) = create("help me pick a lock", stream=True)
        assert state == "miss" and "".join(c.choices[0].delta.refusal or "" for c in chunks if c.choices)
        state, hit = create("help me pick a lock")
        assert state == "hit"
        assert hit.choices[0].message.refusal == REFUSAL and not hit.choices[0].message.content
        # ...and replayed as a stream, as a live stream carries it (null logprobs and finish_reason until the end).
        state, (chunks, delta) = create("help me pick a lock", stream=True)
        assert state == "hit" and delta.refusal == REFUSAL
        assert chunks[0].choices[0].finish_reason is None and chunks[-1].choices[0].finish_reason == "stop"
        assert chunks[0].choices[0].model_dump()["logprobs"] is None and "logprobs" in chunks[0].choices[0].model_dump()

        # A hit has its own id and time: clients that key on the id never see two answers share one.
        state, first = create("what is the capital of Peru?")
        time.sleep(1.1)
        state, again = create("what is the capital of Peru?")
        assert state == "hit" and again.choices[0].message.content == first.choices[0].message.content
        assert again.id != first.id and again.created > first.created

        # A streamed answer with more than text and refusal (reasoning) is not stored: the cache cannot keep it.
        local_upstream.control(model=model, reasoning=1)
        assert create("why is the sky blue?", stream=True)[0] == "miss"
        assert create("why is the sky blue?")[0] == "miss"


def test_a_passthrough_request_keeps_the_vector_its_cache_lookup_made_for_feedback(redis_url, local_upstream, tmp_path):
    """Recorded without one, its text was embedded a second time when feedback came."""
    from redisvl_llmrouter.learning.memory import request_key

    model = f"v{uuid.uuid4().hex[:6]}/cached"
    with (
        gateway(redis_url, local_upstream.url, tmp_path, {"cache": {"enabled": True}}) as srv,
        openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as client,
    ):
        raw = client.chat.completions.with_raw_response.create(model=model, messages=ask("name a prime"), temperature=0)
        key = request_key(srv.router, raw.headers["x-llmrouter-request-id"])
        store = redis.Redis.from_url(redis_url)
        assert wait_for(lambda: len(store.hget(key, "embedding") or b""), 384 * 4) == 384 * 4  # MiniLM, float32


def test_a_cache_hit_does_not_renew_the_entrys_ttl(redis_url, local_upstream, tmp_path):
    """RedisVL renews its cache-wide TTL on each hit: a round trip per hit, and a popular answer never expired."""
    from redisvl_llmrouter.gateway.cache import CACHE_NAME

    model = f"t{uuid.uuid4().hex[:6]}/cached"
    question = f"what is the capital of Chile ({model})?"
    store = redis.Redis.from_url(redis_url)
    with (
        gateway(redis_url, local_upstream.url, tmp_path, {"cache": {"enabled": True, "ttl_s": 60}}) as srv,
        openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as client,
    ):
        before = {*store.scan_iter(f"{CACHE_NAME}:*"), f"{CACHE_NAME}:stats".encode()}  # entries only
        client.chat.completions.create(model=model, messages=ask(question), temperature=0)
        deadline = time.monotonic() + 10  # the entry is stored just after the answer
        while not (new := set(store.scan_iter(f"{CACHE_NAME}:*")) - before) and time.monotonic() < deadline:
            time.sleep(0.05)
        (entry,) = new
        time.sleep(1.5)
        raw = client.chat.completions.with_raw_response.create(model=model, messages=ask(question), temperature=0)
        assert raw.headers["x-llmrouter-cache"] == "hit"
        assert 0 < store.pttl(entry) <= 58_600  # counted from the store, 1.5 s ago, not from the hit


def _route_of(entry: dict) -> str:
    """The metrics label of a logged request: its route, else what kind of request it was."""
    if entry.get("route"):
        return entry["route"]
    return "passthrough" if entry.get("strategy") == "passthrough" else "cache" if entry.get("cache") else "unmatched"


def metric_samples(text: str) -> dict[str, float]:
    """Prometheus text as ``{"name{labels}": value}`` (comments skipped)."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


def test_the_cache_is_off_by_default_and_a_lost_cache_index_costs_hits_not_requests(
    redis_url, local_upstream, tmp_path
):
    model = f"cl{uuid.uuid4().hex[:6]}/cached"
    with gateway(redis_url, local_upstream.url, tmp_path) as srv:
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            raw = c.chat.completions.with_raw_response.create(model=model, messages=ask("hi"), temperature=0)
            assert raw.headers["x-llmrouter-cache"] == "off"  # "bypass" is a client's opt-out
    store = redis.Redis.from_url(redis_url)
    with gateway(redis_url, local_upstream.url, tmp_path, {"cache": {"enabled": True}}) as srv:
        store.execute_command("FT.DROPINDEX", "llmrouter:cache")  # as after a restart of an empty Redis
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            raw = c.chat.completions.with_raw_response.create(model=model, messages=ask("hi"), temperature=0)
            assert raw.parse().choices[0].message.content == f"[{model}] hi"
            assert raw.headers["x-llmrouter-cache"] == "bypass"  # not looked up
            indexes = lambda: b"llmrouter:cache" in store.execute_command("FT._LIST")  # noqa: E731
            assert wait_for(indexes, True)  # created again
            assert c.chat.completions.with_raw_response.create(model=model, messages=ask("hi"), temperature=0).headers[
                "x-llmrouter-cache"
            ] in ("miss", "hit")


def test_a_thousand_concurrent_requests_end_without_an_error(server):
    async def run() -> list:
        clients = [
            openai.AsyncOpenAI(
                base_url=server.v1,
                api_key="none",
                max_retries=0,
                timeout=120,
                http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=50), timeout=120),
            )
            for _ in range(20)
        ]
        results = await asyncio.gather(
            *(
                clients[i % 20].chat.completions.create(model="openai/gpt-4.1-nano", messages=ask(f"load {i}"))
                for i in range(1000)
            ),
            return_exceptions=True,
        )
        for c in clients:
            await c.close()
        return results

    results = asyncio.run(run())
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert len({r.choices[0].message.content for r in results}) == 1000


def test_a_gateway_on_a_redis_reached_over_tls_routes_logs_and_learns(redis_url, local_upstream, tmp_path_factory):
    """Managed Redis speaks TLS: every client the gateway makes (router, breakers, write-behind log,
    statistics) goes through the ``rediss://`` URL it was given."""
    from tls_support import certificates, tls_terminator

    files = certificates(tmp_path_factory.mktemp("tls"))
    plain = redis.Redis.from_url(redis_url)
    with tls_terminator(plain.connection_pool.connection_kwargs["port"], files) as port:
        url = f"rediss://127.0.0.1:{port}?ssl_ca_certs={files['ca.crt']}"
        with gateway(url, local_upstream.url, tmp_path_factory.mktemp("gw-tls")) as srv:
            client = openai.OpenAI(base_url=srv.v1, api_key="unused", max_retries=0)
            raw = client.chat.completions.with_raw_response.create(
                model="auto", messages=[{"role": "user", "content": "What is the capital of France?"}]
            )
            request_id, model = raw.headers["x-llmrouter-request-id"], raw.headers["x-llmrouter-model"]
            assert raw.parse().choices[0].message.content
            learned = srv.post("/v1/feedback", json={"request_id": request_id, "model": model, "quality": 1.0})
            assert learned.status_code == 200, learned.text
            assert srv.get("/stats").json()["models"][model]["requests"] >= 1
            # Written through TLS, read back on the plain port: the decisions log holds the request.
            for _ in range(100):
                entries = parse_entries(plain.xrange(stream_key(srv.router)))
                if any(e.get("request_id") == request_id for e in entries):
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the request never reached the decisions log")
