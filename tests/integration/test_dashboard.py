"""The dashboard in a real browser (Debian's chromium driven by Playwright) after real traffic."""

from __future__ import annotations

import shutil
from pathlib import Path

import openai
import pytest
from gateway_support import gateway, upstream

from redisvl_llmrouter.observability.report import format_usd as money

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
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
            page.wait_for_function("document.body.dataset.updatedMs !== undefined", timeout=15_000)

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
            page.screenshot(path=str(SCREENSHOT), full_page=True)

            send(srv, PROMPTS[:2])  # the page updates on its own
            page.wait_for_function("document.querySelector('#t-requests').textContent === '20'", timeout=15_000)
            assert len(page.query_selector_all("#recent tbody tr")) == 20

            page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing runs off the side
            page.wait_for_timeout(600)
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            browser.close()
            assert problems == []


def test_with_api_keys_the_data_needs_a_key_and_the_page_takes_it_from_the_fragment(redis_url, tmp_path):
    with upstream() as up, gateway(redis_url, up.url, tmp_path, env={"LLMROUTER_API_KEYS": "k-dash"}) as srv:
        assert srv.get("/dashboard/data").status_code == 401
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
            page = browser.new_page()
            page.goto(f"{srv.base}/dashboard#key=k-dash")
            page.wait_for_function("document.body.dataset.updatedMs !== undefined", timeout=15_000)
            assert "k-dash" not in page.url  # the key leaves the address bar
            assert page.text_content("#t-requests") == "0"
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
            page.wait_for_function("document.querySelectorAll('#recent tbody tr').length === 2", timeout=15_000)
            for table in ("#models", "#recent"):  # every column stays in view: no sideways scrolling
                fits = "t => t.scrollWidth <= t.parentElement.clientWidth + 1"
                assert page.eval_on_selector(table, fits), table
            cells = page.query_selector_all("#models td.name")
            assert {c.get_attribute("title") for c in cells} >= set(names)  # the whole name, on hover
            assert all(c.evaluate("c => c.getBoundingClientRect().height") < 60 for c in cells)  # no tall smear
            browser.close()
