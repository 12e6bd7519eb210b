"""Gateway overhead and load on this machine, against the local upstream; writes benchmarks/results/gateway.json.

    .venv/bin/python benchmarks/gateway.py [--requests 2000] [--concurrency 1000] [--json OUT]

Real processes, as users run them: the local OpenAI-compatible upstream (``llmrouter upstream``)
and ``llmrouter serve --upstream ...`` (with its embedded Redis), driven by the official
``openai`` async client from this process.

* **Overhead**: sequential requests, interleaved so that drift hits every path alike: the
  upstream called directly with the ``openai`` client, the same request through the gateway with
  a concrete model (passthrough), and with ``model="auto"`` (routing: embedding, Redis search,
  policy), and the library's ``router(text)`` in this process on the same Redis. Overhead =
  gateway p50 (p99) minus direct p50 (p99); routing inside the gateway = auto minus passthrough.
* **Decisions log**: the same passthrough request against a second gateway with the log off,
  interleaved with the first: the difference is what logging costs the request.
* **Load**: ``--concurrency`` requests at once through the gateway (passthrough, then auto):
  errors, wall time, throughput.
* **Report**: more ``auto`` traffic until the decisions log holds ``--log-entries`` requests, then
  ``llmrouter report --plot`` on it, timed as a user runs it (a fresh process; best of three).

Both gateways and the report use one embedded Redis started here (``REDIS_URL``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
QUESTIONS = [
    "what is {i} plus {i}?",
    "translate 'good morning number {i}' to French",
    "name a fruit that starts with the letter number {i}",
    "explain in one sentence why the sky is blue ({i})",
]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")


@contextlib.contextmanager
def process(args: list[str], ready: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    # stderr to a file, not a pipe: a pipe nobody reads fills up and blocks the server.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed when the process is stopped
    proc = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=log)
    try:
        try:
            wait_http(ready)
        except RuntimeError:
            log.seek(0)
            raise RuntimeError(f"{' '.join(args[:2])} did not start: {log.read().decode()[-2000:]}") from None
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3),
            "mean": round(float(a.mean()), 3), "n": int(a.size)}  # fmt: skip


async def timed(client: openai.AsyncOpenAI, model: str, i: int) -> float:
    started = time.perf_counter()
    await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)].format(i=i)}]
    )
    return (time.perf_counter() - started) * 1000


async def overhead(upstream: str, gateway: str, quiet: str, n: int) -> dict[str, Any]:
    direct = openai.AsyncOpenAI(base_url=upstream, api_key="none", max_retries=0)
    gw = openai.AsyncOpenAI(base_url=gateway, api_key="none", max_retries=0)
    no_log = openai.AsyncOpenAI(base_url=quiet, api_key="none", max_retries=0)
    model = "openai/gpt-4.1-nano"
    paths = {
        "direct": (direct, model),
        "passthrough": (gw, model),
        "auto": (gw, "auto"),
        "passthrough_no_log": (no_log, model),
    }
    for i in range(200):  # warm-up: connections, the embedding model, Redis scripts
        for client, m in paths.values():
            await timed(client, m, i)
    # The library's route in this process, same Redis and router, interleaved with the rest: what
    # routing costs outside the gateway in this very run (other texts, so no embedding is reused).
    from redisvl_llmrouter import SemanticRouter

    router = SemanticRouter.from_existing("default")
    for i in range(50):
        router(QUESTIONS[i % len(QUESTIONS)].format(i=-i))
    samples: dict[str, list[float]] = {name: [] for name in [*paths, "library_route"]}
    for i in range(n):
        for name, (client, m) in paths.items():
            samples[name].append(await timed(client, m, 10_000 + i))
        started = time.perf_counter()
        router(QUESTIONS[i % len(QUESTIONS)].format(i=-10_000 - i))
        samples["library_route"].append((time.perf_counter() - started) * 1000)
    router.close()
    out = {name: stats(ms) for name, ms in samples.items()}
    out["overhead"] = {
        "passthrough_p50_ms": round(out["passthrough"]["p50"] - out["direct"]["p50"], 3),
        "passthrough_p99_ms": round(out["passthrough"]["p99"] - out["direct"]["p99"], 3),
        "auto_p50_ms": round(out["auto"]["p50"] - out["direct"]["p50"], 3),
        "auto_p99_ms": round(out["auto"]["p99"] - out["direct"]["p99"], 3),
        # what routing adds inside the gateway (auto over passthrough), next to the library's route
        "routing_in_gateway_p50_ms": round(out["auto"]["p50"] - out["passthrough"]["p50"], 3),
        "library_route_p50_ms": out["library_route"]["p50"],
        "decision_logging_p50_ms": round(out["passthrough"]["p50"] - out["passthrough_no_log"]["p50"], 3),
    }
    for client in (direct, gw, no_log):
        await client.close()
    return out


async def load(gateway: str, concurrency: int, model: str, offset: int = 50_000) -> dict[str, Any]:
    import httpx as _httpx

    limits = _httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = openai.AsyncOpenAI(
        base_url=gateway,
        api_key="none",
        max_retries=0,
        timeout=120,
        http_client=_httpx.AsyncClient(limits=limits, timeout=120),
    )
    started = time.perf_counter()
    results = await asyncio.gather(
        *(timed(client, model, offset + i) for i in range(concurrency)), return_exceptions=True
    )
    wall = time.perf_counter() - started
    await client.close()
    errors = [r for r in results if isinstance(r, BaseException)]
    ok = [r for r in results if not isinstance(r, BaseException)]
    return {
        "model": model,
        "requests": concurrency,
        "errors": len(errors),
        "error_kinds": sorted({type(e).__name__ for e in errors}),
        "wall_s": round(wall, 3),
        "requests_per_s": round(concurrency / wall, 1),
        "latency_ms": stats(ok) if ok else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="sequential requests per path")
    parser.add_argument("--concurrency", type=int, default=1000, help="requests at once in the load test")
    parser.add_argument("--log-entries", type=int, default=10_000, help="log size for the report timing")
    parser.add_argument("--json", dest="json_out", type=Path, default=HERE / "results" / "gateway.json")
    args = parser.parse_args()

    from redisvl_llmrouter.embedded import EmbeddedRedis

    redis_server = EmbeddedRedis().start()
    try:
        return run(args, redis_server.url)
    finally:
        redis_server.stop()


async def fill_log(gateway: str, redis_url: str, entries: int) -> int:
    """Send ``auto`` requests, 200 at a time, until the decisions log holds ``entries`` completions."""
    import redis

    client = redis.Redis.from_url(redis_url)
    key = "llmrouter:{default}:decisions"
    sent = 0
    while client.xlen(key) < entries:
        result = await load(gateway, 200, "auto", offset=100_000 + sent)
        sent += result["requests"]
        time.sleep(0.05)  # the write-behind flushes within milliseconds
    return int(client.xlen(key))


def time_report(redis_url: str, tmp: str) -> dict[str, Any]:
    plot = Path(tmp) / "report.png"
    command = [str(BIN / "llmrouter"), "--redis-url", redis_url, "report", "--router", "default", "--plot", str(plot)]
    walls, printed = [], ""
    for _ in range(3):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        walls.append(time.perf_counter() - started)
        printed = done.stdout
    return {
        "command": "llmrouter report --router default --plot report.png",
        "wall_s_best": round(min(walls), 3),
        "wall_s_all": [round(w, 3) for w in walls],
        "plot_bytes": plot.stat().st_size,
        "first_line": printed.splitlines()[0] if printed else "",
    }


def run(args: argparse.Namespace, redis_url: str) -> int:
    os.environ["REDIS_URL"] = redis_url

    up_port, gw_port, quiet_port = free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}/v1"
    with tempfile.TemporaryDirectory() as tmp:
        quiet_config = Path(tmp) / "no_log.json"
        quiet_config.write_text(json.dumps({"log": {"enabled": False}}))
        llmrouter = str(BIN / "llmrouter")
        with (
            process([llmrouter, "upstream", "--port", str(up_port)], f"{upstream}/models"),
            process(
                [llmrouter, "serve", "--upstream", upstream, "--port", str(gw_port)],
                f"http://127.0.0.1:{gw_port}/health",
            ),
            process(
                [llmrouter, "serve", "--upstream", upstream, "--port", str(quiet_port), "--config", str(quiet_config)],
                f"http://127.0.0.1:{quiet_port}/health",
            ),
        ):
            gateway, quiet = f"http://127.0.0.1:{gw_port}/v1", f"http://127.0.0.1:{quiet_port}/v1"
            load_before = os.getloadavg()
            measured = asyncio.run(overhead(upstream, gateway, quiet, args.requests))
            passthrough_load = asyncio.run(load(gateway, args.concurrency, "openai/gpt-4.1-nano"))
            auto_load = asyncio.run(load(gateway, args.concurrency, "auto"))
            log_entries = asyncio.run(fill_log(gateway, redis_url, args.log_entries))
            report = {"log_entries": log_entries, **time_report(redis_url, tmp)}
            counts = httpx.get(f"http://127.0.0.1:{up_port}/control").json()["counts"]
    out = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "openai": openai.__version__,
            "loadavg_start": [round(x, 2) for x in load_before],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "sequential_requests_per_path": args.requests,
        **measured,
        "load": {"passthrough": passthrough_load, "auto": auto_load},
        "report": report,
        "upstream_calls": {m: c["calls"] for m, c in counts.items()},
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(out, indent=1) + "\n")
    o = out["overhead"]
    print(
        f"direct p50/p99 {out['direct']['p50']:.2f}/{out['direct']['p99']:.2f} ms; gateway overhead: "
        f"passthrough +{o['passthrough_p50_ms']:.2f}/+{o['passthrough_p99_ms']:.2f} ms, "
        f"auto +{o['auto_p50_ms']:.2f}/+{o['auto_p99_ms']:.2f} ms; decisions log +{o['decision_logging_p50_ms']:.2f} ms"
    )
    print(
        f"routing inside the gateway (auto - passthrough) p50 {o['routing_in_gateway_p50_ms']:.2f} ms; "
        f"the library's route, same run, p50 {o['library_route_p50_ms']:.2f} ms"
    )
    for name, result in out["load"].items():
        print(
            f"load {name}: {result['requests']} at once, {result['errors']} errors, {result['wall_s']:.2f} s, "
            f"{result['requests_per_s']:.0f} req/s"
        )
    r = out["report"]
    print(f"llmrouter report --plot on {r['log_entries']} log entries: {r['wall_s_best']:.2f} s (best of 3)")
    print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
