"""Gateways answering while their router is replaced; writes benchmarks/results/router_changes.json.

    .venv/bin/python benchmarks/router_changes.py [--overwrites 40] [--gateways 2] [--workers 8] [--json OUT]

Real processes, as users run them: an embedded Redis started here, the local upstream
(``llmrouter upstream``) and ``--gateways`` gateways (``llmrouter serve --router NAME``) serving
one router with three routes and no default route. ``--workers`` threads send ``model="auto"``
requests through the gateways with the official ``openai`` client (no client retries, so every
failure counts) while another process replaces the router ``--overwrites`` times with
``overwrite=True``, alternating two definitions: one adds a reference, changes a cost and renames a
route. Every prompt matches a route under both definitions, so every failed request is one the
change caused. Reported: requests, failures by status and code, how long an overwrite takes, and
which routes answer once the gateways have settled.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import openai
from gateway import BIN, HERE, free_port, process

NAME = "router-changes"
PROMPTS = [
    "write a python function that reverses a linked list",
    "how do I fix a segmentation fault in my C program",
    "solve the integral of x squared times sine of x",
    "what is the derivative of the natural logarithm of x",
    "give me a recipe for a chocolate cake",
    "how long should I boil an egg for a soft yolk",
]
CODE = ["write a python function", "fix a bug in my program", "segmentation fault in C code",
        "reverse a linked list in python", "how do I debug this code"]  # fmt: skip
MATH = ["solve this integral", "what is the derivative of this function", "prove this theorem",
        "compute the derivative of ln x", "integrate x squared sin x"]  # fmt: skip
FOOD = ["give me a recipe for cake", "how long to boil an egg", "what can I cook with chicken",
        "chocolate cake recipe", "soft boiled egg timing"]  # fmt: skip


def definition(second: bool) -> list[Any]:
    """The first definition, or the second: ``code`` gains a reference, ``math`` costs more, and
    ``cooking`` is renamed ``kitchen`` (with another model)."""
    from redisvl_llmrouter import Route

    food = ("kitchen", "up/kitchen-model") if second else ("cooking", "up/cook-model")
    return [
        Route(name="code", model="up/code-model", cost=3.0, distance_threshold=0.6,
              references=CODE + (["refactor this javascript class"] if second else [])),
        Route(name="math", model="up/math-model", cost=20.0 if second else 10.0, distance_threshold=0.6,
              references=MATH),
        Route(name=food[0], model=food[1], cost=1.0, distance_threshold=0.6, references=FOOD),
    ]  # fmt: skip


def overwrite(redis_url: str, count: int, pause_s: float) -> dict[str, list[Any]]:
    """Replace the router ``count`` times, alternating the definitions: the seconds each took, and the
    errors of those that failed."""
    from redisvl_llmrouter import MiniLMVectorizer, SemanticRouter

    MiniLMVectorizer().embed("warm up: loading the model is no part of an overwrite")
    took, errors = [], []
    for i in range(count):
        started = time.perf_counter()
        try:
            SemanticRouter(NAME, routes=definition(i % 2 == 0), redis_url=redis_url, overwrite=True).close()
        except Exception as exc:  # counted: an overwrite that fails is part of what is measured
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
        took.append(time.perf_counter() - started)
        time.sleep(pause_s)
    return {"took": took, "errors": errors}


def send(gateways: list[str], workers: int, stop: threading.Event) -> list[dict[str, Any]]:
    """``model="auto"`` requests from ``workers`` threads until ``stop``: one record per request."""
    results: list[dict[str, Any]] = []

    def worker(i: int) -> None:
        client = openai.OpenAI(base_url=gateways[i % len(gateways)], api_key="none", max_retries=0, timeout=30)
        k = i
        while not stop.is_set():
            k += 1
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model="auto", messages=[{"role": "user", "content": PROMPTS[k % len(PROMPTS)]}]
                )
                results.append({"status": raw.status_code, "route": raw.headers.get("x-llmrouter-route")})
            except openai.APIStatusError as exc:
                error = exc.body.get("error", exc.body) if isinstance(exc.body, dict) else {}
                results.append({"status": exc.status_code, "code": (error or {}).get("code")})
            except openai.APIError as exc:  # connection errors, timeouts
                results.append({"status": None, "code": type(exc).__name__})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--overwrites", type=int, default=40)
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between overwrites")
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--workers", type=int, default=8, help="client threads")
    parser.add_argument("--json", dest="json_out", type=Path, default=HERE / "results" / "router_changes.json")
    parser.add_argument("--overwriter", metavar="REDIS_URL", help=argparse.SUPPRESS)  # the overwriting process
    args = parser.parse_args()
    if args.overwriter:
        print(json.dumps(overwrite(args.overwriter, args.overwrites, args.pause)))
        return 0

    from redisvl_llmrouter import SemanticRouter
    from redisvl_llmrouter.embedded import EmbeddedRedis

    redis_server = EmbeddedRedis().start()
    try:
        url = redis_server.url
        SemanticRouter(NAME, routes=definition(False), redis_url=url, overwrite=True).close()
        llmrouter, up_port = str(BIN / "llmrouter"), free_port()
        upstream = f"http://127.0.0.1:{up_port}/v1"
        env = {"REDIS_URL": url}
        ports = [free_port() for _ in range(args.gateways)]
        serve = [[llmrouter, "serve", "--upstream", upstream, "--router", NAME, "--port", str(p)] for p in ports]
        with contextlib.ExitStack() as processes:
            processes.enter_context(process([llmrouter, "upstream", "--port", str(up_port)], f"{upstream}/models", env))
            for command, port in zip(serve, ports, strict=True):
                processes.enter_context(process(command, f"http://127.0.0.1:{port}/health", env))
            gateways = [f"http://127.0.0.1:{p}/v1" for p in ports]
            send_each(gateways)  # warm-up: every gateway answers every prompt
            stop = threading.Event()
            sent: list[dict[str, Any]] = []
            client = threading.Thread(target=lambda: sent.extend(send(gateways, args.workers, stop)))
            client.start()
            try:
                time.sleep(2.0)
                done = subprocess.run(
                    [sys.executable, __file__, "--overwriter", url, "--overwrites", str(args.overwrites),
                     "--pause", str(args.pause)],
                    capture_output=True, text=True, check=True, env={**os.environ, **env},
                )  # fmt: skip
                time.sleep(2.0)
            finally:
                stop.set()
                client.join()
            time.sleep(1.5)  # longer than the gateways' check for changes: all route on the last definition
            settle = send_each(gateways)
    finally:
        redis_server.stop()
    overwrites = json.loads(done.stdout.splitlines()[-1])
    took = overwrites["took"]
    failures = collections.Counter(f"{r['status']} {r.get('code')}" for r in sent if r["status"] != 200)
    out = {
        "machine": {"cpus": os.cpu_count(), "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "gateways": args.gateways,
        "client_threads": args.workers,
        "overwrites": args.overwrites,
        "overwrite_ms": {"median": round(statistics.median(took) * 1000, 1), "max": round(max(took) * 1000, 1)},
        "overwrite_errors": dict(collections.Counter(e.split(":")[0] for e in overwrites["errors"])),
        "overwrite_error_examples": overwrites["errors"][:3],
        "requests": len(sent),
        "answered": sum(r["status"] == 200 for r in sent),
        "failures": dict(failures),
        "routes_answering": dict(collections.Counter(r.get("route") for r in sent if r["status"] == 200)),
        "after_settling": dict(collections.Counter(f"{s} {r}" for s, r in settle)),
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(out, indent=1) + "\n")
    print(
        f"{out['requests']} requests through {args.gateways} gateways while the router was replaced "
        f"{args.overwrites} times: {out['answered']} answered, failures {out['failures'] or 'none'}; "
        f"an overwrite took {out['overwrite_ms']['median']:.0f} ms (median), failed overwrites "
        f"{out['overwrite_errors'] or 'none'}; after settling: {out['after_settling']}"
    )
    print(f"wrote {args.json_out}")
    return 0


def send_each(gateways: list[str]) -> list[tuple[int, str | None]]:
    """Every prompt once through every gateway: (status, route) of each."""
    answers = []
    for gateway in gateways:
        client = openai.OpenAI(base_url=gateway, api_key="none", max_retries=0, timeout=60)
        for prompt in PROMPTS:
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model="auto", messages=[{"role": "user", "content": prompt}]
                )
                answers.append((raw.status_code, raw.headers.get("x-llmrouter-route")))
            except openai.APIStatusError as exc:
                answers.append((exc.status_code, None))
    return answers


if __name__ == "__main__":
    sys.exit(main())
