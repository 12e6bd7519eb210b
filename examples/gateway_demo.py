"""A gateway round trip with no API key: the local upstream, ``llmrouter serve``, the official ``openai`` client.

Starts ``llmrouter upstream`` (a local OpenAI-compatible server with deterministic answers) and
``llmrouter serve --upstream`` on free ports, sends a few requests with ``model="auto"`` (routed),
one streamed, one with a concrete model (passed through), reports feedback, and prints what the
gateway says it did. With real providers, drop ``--upstream`` and set their keys instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

from redisvl_llmrouter.embedded import EmbeddedRedis

LLMROUTER = str(Path(sys.executable).parent / "llmrouter")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], ready_url: str, log: tempfile._TemporaryFileWrapper[bytes]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise SystemExit(f"{args[1]} exited: {log.read().decode()[-2000:]}")
        try:
            if httpx.get(ready_url, timeout=1).status_code < 500:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{args[1]} did not start within 120 s")


def main() -> None:
    redis_server = EmbeddedRedis().start()
    os.environ["REDIS_URL"] = redis_server.url  # the gateway and this script share one Redis
    up, gw = free_port(), free_port()
    upstream = f"http://127.0.0.1:{up}/v1"
    base = f"http://127.0.0.1:{gw}"
    procs = []
    with tempfile.TemporaryFile() as up_log, tempfile.TemporaryFile() as gw_log:
        try:
            procs.append(start([LLMROUTER, "upstream", "--port", str(up)], f"{upstream}/models", up_log))
            serve = [LLMROUTER, "serve", "--port", str(gw), "--upstream", upstream, "--router", "default"]
            procs.append(start(serve, f"{base}/health", gw_log))
            print(f"gateway on {base} (dashboard: {base}/dashboard), upstream {upstream}\n")
            client = openai.OpenAI(base_url=f"{base}/v1", api_key="none")
            for text in ["hi! how are you?", "explain garbage collection", "prove there are infinitely many primes"]:
                raw = client.chat.completions.with_raw_response.create(
                    model="auto", messages=[{"role": "user", "content": text}]
                )
                answer, h = raw.parse(), raw.headers
                print(
                    f"{text!r:42} -> {h['x-llmrouter-route']:8} {answer.model:28} "
                    f"cost ${float(h['x-llmrouter-cost']):.6f}, saved ${float(h['x-llmrouter-saving']):.6f}"
                )
                print(f"{'':45} answer: {answer.choices[0].message.content!r}")
            chunks = client.chat.completions.create(
                model="auto", stream=True, messages=[{"role": "user", "content": "write a haiku about Redis"}]
            )
            streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            print(f"{'streamed':42} -> {streamed!r}")
            raw = client.chat.completions.with_raw_response.create(
                model="openai/gpt-4.1-mini", messages=[{"role": "user", "content": "hello"}]
            )
            print(f"{'passthrough openai/gpt-4.1-mini':42} -> {raw.parse().model}")
            request_id = raw.headers["x-llmrouter-request-id"]
            feedback = httpx.post(f"{base}/v1/feedback", json={"request_id": request_id, "quality": 1.0}).json()
            print(f"{'feedback on ' + request_id[:16] + '...':42} -> {feedback}")
            stats = httpx.get(f"{base}/stats").json()
            served = {m: s["requests"] for m, s in stats["models"].items() if s["requests"]}
            print(f"\n/stats: requests per model {served}\n")
            client.close()
            time.sleep(0.1)  # the decisions log is written just after each answer
            subprocess.run([LLMROUTER, "report", "--router", "default"], check=True)
        finally:
            for proc in reversed(procs):
                proc.terminate()
                proc.wait(timeout=30)
            redis_server.stop()


if __name__ == "__main__":
    main()
