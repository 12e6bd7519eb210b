"""The dashboard in a real browser (Debian's chromium driven by Playwright) after real traffic."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai
import pytest
import redis
from gateway_support import gateway, upstream

from redisvl_llmrouter.observability.decisions import stream_key
from redisvl_llmrouter.observability.report import format_usd as money

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: The README's picture of the dashboard, retaken by this test with LLMROUTER_UPDATE_SCREENSHOT=1 (else the
#: test's picture goes to its temporary directory, so that running the tests leaves the checkout as it was).
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "dashboard.png"
PROMPTS = [
    "hello, how are you?",
    "convert 72 Fahrenheit to Celsius",
    "explain garbage collection",
    "why does my python script run out of memory when reading a big CSV?",
    "architect a distributed system for millions of users",
    "prove that there are infinitely many primes",
]

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is part of the dev extra")
if not Path(CHROMIUM).exists():
    pytest.skip(
        "chromium is not installed and could not be (make install runs apt-get install chromium where it can)",
        allow_module_level=True,
    )


def until(page: Any, expression: str, timeout_s: float = 15.0) -> None:
    """Wait until ``expression`` holds in the page, polled from here: Playwright's ``wait_for_function``
    polls by ``eval`` inside the page, which the dashboard's Content-Security-Policy forbids, as it should."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"never true in the page: {expression}"
        page.wait_for_timeout(50)


def send(srv, prompts: list[str]) -> None:
    with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as client:
        for text in prompts:
            client.chat.completions.create(model="auto", messages=[{"role": "user", "content": text}])


def test_the_dashboard_shows_what_stats_says_and_follows_new_traffic(redis_url, tmp_path):
    with upstream() as up, gateway(redis_url, up.url, tmp_path) as srv:
        send(srv, PROMPTS * 3)
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(f"{srv.base}/dashboard?refresh=0.5")
            until(page, "document.body.dataset.updatedMs !== undefined")

            assert page.text_content("#t-requests") == "18"
            stats = srv.get("/stats").json()
            assert page.text_content("#router") == stats["router"]
            shown = {
                row.get_attribute("data-model"): int(row.query_selector("td.requests").inner_text().replace(",", ""))
                for row in page.query_selector_all("#models tbody tr")
            }
            assert shown == {m: s["requests"] for m, s in stats["models"].items()}
            # (model counts live in Redis per model, shared by every router and process: compare, don't count)
            data = srv.get("/dashboard/data").json()
            assert len(data["report"]["by_model"]) >= 2  # several models served this router's traffic
            report = data["report"]["total"]
            assert page.text_content("#t-cost") == money(report["cost_usd"])  # the text report's rule
            answered = [d for d in data["recent"] if d.get("type") == "completion"]
            shown_costs = [
                row.query_selector_all("td")[5].inner_text() for row in page.query_selector_all("#recent tbody tr")
            ]
            assert sorted(shown_costs) == sorted(money(d["cost"]) for d in answered)
            assert any(0 < d["cost"] < 1e-4 for d in answered)  # cheap calls: shown with their digits, not $0.0000
            assert page.text_content("#t-saving") == f"{100 * report['saving_fraction']:.1f}%"
            assert len(page.query_selector_all("#recent tbody tr")) == 18
            assert page.query_selector_all("#chart-models .uplot")  # the chart was drawn
            shot = SCREENSHOT if os.environ.get("LLMROUTER_UPDATE_SCREENSHOT") == "1" else tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000  # a picture of a page, not of nothing

            send(srv, PROMPTS[:2])  # the page updates on its own
            until(page, "document.querySelector('#t-requests').textContent === '20'")
            assert len(page.query_selector_all("#recent tbody tr")) == 20

            page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing runs off the side
            page.wait_for_timeout(600)
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            browser.close()
            assert problems == []


def test_with_api_keys_the_data_needs_a_key_and_the_page_takes_it_from_the_fragment(redis_url, tmp_path):
    """A key is taken as typed: a "+" (base64 keys have them) was read as a space, and the page was refused.
    An empty window says so: its cost was shown as $0.0000 and drawn as a flat $0 line."""
    key = "k+dash/x="
    with upstream() as up, gateway(redis_url, up.url, tmp_path, env={"LLMROUTER_API_KEYS": key}) as srv:
        assert srv.get("/dashboard/data").status_code == 401
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
            page = browser.new_page()
            page.goto(f"{srv.base}/dashboard#key={key}")
            until(page, "document.body.dataset.updatedMs !== undefined")
            assert "k+dash" not in page.url  # the key leaves the address bar
            assert page.text_content("#t-requests") == "0"
            assert (page.text_content("#t-cost"), page.text_content("#t-unpriced")) == (
                "–",
                "no requests in this window",
            )
            assert page.text_content("#chart-cost") == "No requests in this window."
            assert (
                page.text_content("#recent tbody") == "None of this key's requests is among the log's newest entries."
            )
            browser.close()


def test_names_a_client_chose_never_push_the_figures_off_the_page(redis_url, tmp_path):
    """Passthrough model names are the client's: the longest allowed, or one piled with combining marks."""
    names = ["openai/" + "x" * 249, "a" + "\u0301" * 200]
    with upstream() as up, gateway(redis_url, up.url, tmp_path) as srv:
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as client:
            for name in names:
                client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"{srv.base}/dashboard")
            until(page, "document.querySelectorAll('#recent tbody tr').length === 2")
            for table in ("#models", "#recent"):  # every column stays in view: no sideways scrolling
                fits = "t => t.scrollWidth <= t.parentElement.clientWidth + 1"
                assert page.eval_on_selector(table, fits), table
            cells = page.query_selector_all("#models td.name")
            assert {c.get_attribute("title") for c in cells} >= set(names)  # the whole name, on hover
            assert all(c.evaluate("c => c.getBoundingClientRect().height") < 60 for c in cells)  # no tall smear
            browser.close()


@contextlib.contextmanager
def dashboard(srv, key: str | None = None, **context: Any) -> Iterator[Any]:
    """The dashboard open in chromium (``context``: Playwright's browser context options), once it has
    drawn its first refresh; the console stays free of errors."""
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        page = browser.new_context(viewport={"width": 1280, "height": 1000}, **context).new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(f"{srv.base}/dashboard?refresh=0.5" + (f"#key={key}" if key else ""))
        until(page, "document.body.dataset.updatedMs !== undefined")
        yield page
        browser.close()
        assert problems == []


def ask(srv, model: str, text: str = "hi", key: str | None = None) -> str:
    """One chat completion through the gateway; its request id."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = srv.post("/v1/chat/completions", headers=headers,
                        json={"model": model, "messages": [{"role": "user", "content": text}]})  # fmt: skip
    assert response.status_code == 200, response.text
    return str(response.headers["x-llmrouter-request-id"])


def logged(redis_url: str, srv, entries: int) -> None:
    """Wait until the gateway's decisions log holds ``entries`` entries (it writes off the request path)."""
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 15
    while client.xlen(stream_key(srv.router)) < entries:
        assert time.monotonic() < deadline, "the log never caught up"
        time.sleep(0.05)
    client.close()


UNLISTED = "local/llama-3"  # a passthrough model the catalog has no price for
RATED = "openai/gpt-4.1-mini"  # a catalog model: feedback on its answers is taken


def test_a_cost_nobody_knows_is_shown_as_unknown_not_as_free_and_unpriced_requests_are_counted(redis_url, tmp_path):
    with upstream() as up, gateway(redis_url, up.url, tmp_path) as srv:
        for _ in range(3):
            ask(srv, UNLISTED)
        with dashboard(srv) as page:
            until(page, "document.querySelector('#t-requests').textContent === '3'")
            # as the report's "cost -: none of the 3 requests answered has a known cost, so no saving either"
            assert page.text_content("#t-cost") == "–" and page.text_content("#t-saving") == "–"
            assert page.text_content("#t-unpriced") == "none of the 3 requests answered has a known cost"
            assert page.text_content("#t-saving-usd") == "no known cost, so no saving"
            assert not page.is_visible("#t-baseline-line")  # no "vs $0.0000 on the baseline model" either
            assert not page.query_selector_all("#chart-cost .uplot")  # no flat $0 line: a note instead
            assert "No known cost in this window" in page.inner_text("#chart-cost")

            send(srv, PROMPTS)  # priced traffic joins: the cost is of those, the rest counted apart
            until(page, "document.querySelector('#t-requests').textContent === '9'")
            total = srv.get("/dashboard/data").json()["report"]["total"]
            priced = total["requests"] - total["errors"] - total["unpriced"]
            assert (total["unpriced"], priced) == (3, 6)
            assert page.text_content("#t-cost") == money(total["cost_usd"])
            assert (
                page.text_content("#t-unpriced") == "over 6 requests with a known cost; 3 requests without a known cost"
            )
            assert page.text_content("#t-saving") == f"{100 * total['saving_fraction']:.1f}%"
            assert page.is_visible("#t-baseline-line")
            assert page.query_selector_all("#chart-cost .uplot")
            assert page.text_content("#cost-note") == "Leaves out 3 requests without a known cost."


@pytest.mark.parametrize("keys", [False, True], ids=["one client", "clients with API keys"])
def test_recent_decisions_lists_the_newest_requests_however_much_feedback_follows_them(redis_url, tmp_path, keys):
    """A client rating every answer writes a feedback entry per request: the table lists requests still."""
    env = {"LLMROUTER_API_KEYS": "k-a,k-b"} if keys else {}
    a, b = ("k-a", "k-b") if keys else (None, None)
    with upstream() as up, gateway(redis_url, up.url, tmp_path, env=env) as srv:
        mine = [ask(srv, RATED, key=a) for _ in range(3)]
        theirs = [ask(srv, RATED, key=b) for _ in range(2)] if keys else []
        for i in range(120):  # more than the table's 50 rows, twice over
            rated = srv.post("/v1/feedback", headers={"Authorization": f"Bearer {a}"} if a else {},
                             json={"request_id": mine[0], "quality": i % 10 / 10})  # fmt: skip
            assert rated.status_code == 200, rated.text
        logged(redis_url, srv, 3 + len(theirs) + 120)

        def recent(key: str | None) -> list[tuple[str, str]]:
            data = srv.get("/dashboard/data", headers={"Authorization": f"Bearer {key}"} if key else {}).json()
            return [(d["type"], d["request_id"]) for d in data["recent"]]

        def answers(ids: list[str]) -> list[tuple[str, str]]:
            return [("completion", rid) for rid in reversed(ids)]  # newest first

        if keys:  # each client its own requests, as before
            assert recent(a) == answers(mine) and recent(b) == answers(theirs)
        else:
            assert recent(None) == answers(mine)
        with dashboard(srv, key=a) as page:
            rows = page.query_selector_all("#recent tbody tr")
            assert [row.get_attribute("data-request-id") for row in rows] == mine[::-1]


def test_traffic_by_model_draws_the_busiest_models_and_sums_the_rest_in_one_line(redis_url, tmp_path):
    """Passthrough models are the clients' to name: a hundred of them must not draw a hundred lines."""
    long_name = "a/" + "W" * 250
    quiet = [f"bulk/m{i:02d}" for i in range(11)]
    with upstream() as up, gateway(redis_url, up.url, tmp_path) as srv:
        for model in ["busy/model"] * 3 + quiet + [long_name]:
            ask(srv, model)
        with dashboard(srv) as page:
            until(page, "document.querySelector('#t-requests').textContent === '15'")
            labels = page.query_selector_all("#chart-models .u-legend .u-series .u-label")
            shown = [label.inner_text() for label in labels]
            # 13 models: the 8 busiest (busy/model, then ties by name) by name, and the other 5 as one line
            assert shown == sorted(["busy/model", long_name, *quiet[:6]]) + ["5 other models"]
            long_label = labels[0]
            assert long_label.get_attribute("title") == long_name  # the whole name on hover
            assert long_label.evaluate("e => e.getBoundingClientRect().height") < 30  # cut on one line
            assert page.eval_on_selector("#chart-models .u-legend", "e => e.getBoundingClientRect().height") < 120


def test_times_are_shown_in_utc_with_their_date_unless_it_is_today(redis_url, tmp_path):
    """As the report, the plot and ?since= read them: a time copied from the page means the same there."""
    with upstream() as up, gateway(redis_url, up.url, tmp_path) as srv:
        two_days_ago = int(time.time() * 1000) - 2 * 86_400_000
        old = {"type": "completion", "ts": two_days_ago, "request_id": "old-request", "model": UNLISTED,
               "status": "ok", "latency_ms": 5.0}  # fmt: skip
        client = redis.Redis.from_url(redis_url)
        client.xadd(stream_key(srv.router), {"d": json.dumps(old)}, id=f"{two_days_ago}-0")
        client.close()
        ask(srv, UNLISTED)
        logged(redis_url, srv, 2)
        with dashboard(srv, timezone_id="Asia/Kolkata") as page:  # a browser 5:30 ahead of UTC
            until(page, "document.querySelectorAll('#recent tbody tr').length === 2")
            today = page.evaluate("Number(document.body.dataset.updatedMs)")
            stamps = {d["request_id"]: d["ts"] for d in srv.get("/dashboard/data").json()["recent"]}

            def utc(ms: int) -> str:
                moment = datetime.fromtimestamp(ms / 1000, UTC)
                same_day = moment.date() == datetime.fromtimestamp(today / 1000, UTC).date()
                return moment.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S")

            assert page.text_content("#recent thead th") == "time (UTC)"
            rows = {
                row.get_attribute("data-request-id"): row.query_selector("td").inner_text()
                for row in page.query_selector_all("#recent tbody tr")
            }
            assert rows == {rid: utc(ts) for rid, ts in stamps.items()}
            assert rows["old-request"].startswith(
                datetime.fromtimestamp(two_days_ago / 1000, UTC).strftime("%Y-%m-%d ")
            )
            assert page.text_content("#status").endswith(" UTC")


DOLLARS = [0.0, 0.0123, -0.0123, -0.00005, 1.2e-5, 1e-6, 9.996e-6, 9.9996e-5, 99.995, 99.99999, 100.0, 1234.5,
           -1234.5, 12_345_678.9, 0.03125, 1e-13, -1e-13]  # fmt: skip


#: Exact ties (1/16 = 6.25%, 12.25 ms) round to even in Python's formats and up in JavaScript's toFixed.
SHARES = [0.0625, 0.3125, 0.5625, 0.8125, 0.1, 1 / 3, 0.0, 1.0, -0.0625, 0.0005]
MILLISECONDS = [12.25, 12.75, 0.05, 0.15, 0.25, 210.2, 3.0, 1e-7, 123456.75]


def test_the_page_prints_dollars_digit_for_digit_as_the_text_report(redis_url, tmp_path):
    with upstream() as up, gateway(redis_url, up.url, tmp_path) as srv, dashboard(srv) as page:
        assert page.evaluate("values => values.map(fmt.usd)", DOLLARS) == [money(v) for v in DOLLARS]
        # and shares and latencies as the report prints them ("cache hit rate 6.2%" was 6.3% here)
        assert page.evaluate("values => values.map(fmt.pct)", SHARES) == [f"{v:.1%}" for v in SHARES]
        assert page.evaluate("values => values.map(fmt.ms)", MILLISECONDS) == [f"{v:.1f}" for v in MILLISECONDS]


def test_a_window_gives_the_chart_the_same_resolution_on_every_refresh(redis_url, tmp_path):
    # Its two ends were read from two clock readings: a window now and then a millisecond longer than
    # an hour tipped the chart into 5-minute buckets (about one refresh in 25).
    with upstream() as up, gateway(redis_url, up.url, tmp_path) as srv:
        widths = [srv.get("/dashboard/data?since=1h").json()["report"]["series"]["bucket_s"] for _ in range(150)]
        assert set(widths) == {60}
