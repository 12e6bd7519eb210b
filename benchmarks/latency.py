"""Routing overhead on this machine: the router against RedisVL's own SemanticRouter, side by side.

    .venv/bin/python benchmarks/latency.py --json latency.json [--queries 1000] [--install]
        [--agreement [--agreement-sample N]]

Everything runs against one Redis (``REDIS_URL``, else the embedded server) with the shipped
``default`` config (routes simple / standard / expert), after a warm-up:

* ``route_p50_ms`` / ``route_p99_ms``: ``router(text)`` end to end (embed, one FT.SEARCH, ranking)
  over ``--queries`` distinct texts, so the in-process embedding cache never serves them.
* ``route_torch_p50_ms``: the same with the torch backend (what the embedding backend alone buys).
* ``upstream_p50_ms`` / ``upstream_p99_ms``: RedisVL 0.28 ``SemanticRouter`` with ``HFTextVectorizer``
  on the same local model (torch), the same routes, references and thresholds, the same queries,
  timed in the same loop as a second router of ours (``paired_route_ms``: each query to ours, then
  to the upstream), so that ``upstream_over_route_p50`` compares runs under the same load.
* ``route_int8_p50_ms`` / ``route_int8_p99_ms``: the same with ``MiniLMVectorizer(quantize=True)``.
* ``batch_qps``: ``router.route_batch`` over 2,000 other distinct texts (and ``batch_qps_int8``).
* ``cache_hit_p50_ms``: a repeated query (the embedding comes from the in-process LRU), and
  ``cache_hit_redisvl_p50_ms``: the same with RedisVL's ``EmbeddingsCache`` instead of the LRU.
* ``cold_start_s``: a fresh ``python`` process doing import + ``from_pretrained("default")`` +
  the first route (ONNX model already exported; Redis already running), and
  ``cold_start_embedded_redis_s``: the same when the process starts its own embedded Redis.
* ``rss_mb``: resident memory of this process with the router warm (before the upstream model
  is loaded); ``rss_total_mb`` at the end.
* ``first_use_build_s``: a source install's one-time build of the fp32 ONNX model (empty cache).
* with ``--install``: ``install_size_mb`` and ``install_first_use_s``, this tree's wheel installed with
  ``[embedded,onnx]`` (no torch) into a fresh venv (size added to an empty venv; first process, outside
  the repo, empty cache, own Redis), and ``install_with_torch_size_mb`` for ``[embedded,onnx,torch]``.
* with ``--agreement``: top-1 route agreement of the ONNX fp32 and int8 paths with torch over
  every prompt of the shared data files (full prompts; the model truncates at 256 tokens).

Queries come from ``../shared/data/routing/*.jsonl`` (or ``$LLMROUTER_OUTCOMES_DIR``; field ``prompt``)
when present, else from a built-in generator; each is cut at a word boundary to a length drawn from the shipped
``default.queries.yaml`` (median ~57 characters, ~15 tokens): the length of a routed chat
request, not of a whole benchmark prompt. ``--max-chars N`` cuts every query to N instead.

Every index and key the benchmark creates is deleted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import yaml

from redisvl_llmrouter import SemanticRouter, pretrained
from redisvl_llmrouter import vectorizers as vz
from redisvl_llmrouter.connection import resolve_url
from redisvl_llmrouter.vectorizers import DEFAULT_MODEL, MiniLMVectorizer, _local_model_path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("LLMROUTER_OUTCOMES_DIR", ROOT.parent / "shared" / "data" / "routing"))
SEED = 20240601
WARMUP = 50
BATCH_QUERIES = 2000
CACHE_HIT_RUNS = 1000
COLD_START_RUNS = 3

TARGETS = {  # metric: (comparison, bound)
    "route_p50_ms": ("<=", 3.0),
    "route_p99_ms": ("<=", 10.0),
    "upstream_over_route_p50": (">=", 5.0),
    "batch_qps": (">=", 600.0),
    "cache_hit_p50_ms": ("<=", 0.5),
    "cold_start_s": ("<=", 3.0),
    "onnx_agreement_top1": (">=", 0.99),
}


# --------------------------------------------------------------------------- queries
def shared_prompts() -> dict[str, list[str]]:
    """Prompts of each shared data file, in file order ({} when the data is absent)."""
    out: dict[str, list[str]] = {}
    for path in sorted(DATA_DIR.glob("*.jsonl")) if DATA_DIR.is_dir() else []:
        with path.open(encoding="utf-8") as handle:
            prompts = [json.loads(line).get("prompt") for line in handle if line.strip()]
        out[path.stem] = [p for p in prompts if isinstance(p, str) and p.strip()]
    return out


def builtin_prompts() -> list[str]:
    """A varied list of requests when the shared data is absent (a few thousand distinct texts)."""
    asks = [
        "hi, can you tell me", "quick question:", "please explain", "write a short note on",
        "summarise in two lines", "what is", "compare and contrast", "give me an example of",
        "design a plan for", "debug this issue with", "translate to French:", "prove that",
        "outline the trade-offs of", "how do I fix", "estimate the cost of", "critique the argument for",
    ]  # fmt: skip
    topics = [
        "garbage collection in Java", "the capital of Australia", "a REST API for a bakery",
        "binary search on rotated arrays", "photosynthesis", "the French revolution",
        "a zero-knowledge voting protocol", "Kubernetes autoscaling", "compound interest",
        "the halting problem", "a SQL query with window functions", "vaccines and herd immunity",
        "quantum entanglement", "a birthday message for my aunt", "CAP theorem in practice",
        "sorting 10 GB of logs on a laptop", "Shakespeare's sonnet 18", "the Krebs cycle",
        "inflation and interest rates", "a React component that paginates",
        "a distributed rate limiter", "the Pythagorean theorem", "climate feedback loops",
        "unit conversion from miles to km",
    ]  # fmt: skip
    tails = ["", " for a beginner", " with code", " in one paragraph", " step by step", " for my exam",
             " at scale", " and its pitfalls", " with references", " as a table"]  # fmt: skip
    return [f"{a} {t}{tail}" for a in asks for t in topics for tail in tails]


def realistic_lengths() -> list[int]:
    """Character lengths of the shipped example queries: the length of a routed request."""
    data = yaml.safe_load((pretrained.CONFIG_DIR / "default.queries.yaml").read_text(encoding="utf-8"))
    return [len(q) for split in data.values() for tier in split.values() for q in tier]


def cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = text[:limit].rsplit(" ", 1)[0]
    return head if len(head) >= limit // 2 else text[:limit]


def make_queries(count: int, max_chars: int | None) -> tuple[list[str], str]:
    """``count`` distinct query texts, shuffled, and a description of where they came from."""
    rng = random.Random(SEED)
    files = shared_prompts()
    if files:
        pool = [p for prompts in files.values() for p in prompts]
        source = f"shared prompts ({', '.join(sorted(files))})"
    else:
        pool = builtin_prompts()
        source = "built-in generated requests (shared data absent)"
    rng.shuffle(pool)
    lengths = realistic_lengths()
    seen: set[str] = set()
    out: list[str] = []
    for prompt in pool:
        text = cut(prompt, max_chars or rng.choice(lengths))
        if len(text) >= 8 and text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
            if len(out) == count:
                break
    if len(out) < count:
        raise SystemExit(f"Only {len(out)} distinct queries available; ask for fewer with --queries.")
    return out, source


# --------------------------------------------------------------------------- timing helpers
def timed_ms(fn: Callable[[Any], Any], items: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(items))
    clock = time.perf_counter
    for i, item in enumerate(items):
        start = clock()
        fn(item)
        out[i] = clock() - start
    return out * 1e3


def timed_pairs(
    first: Callable[[Any], Any], second: Callable[[Any], Any], items: Sequence[Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Both functions timed on each item in turn (interleaved, so they share the machine's load)."""
    a, b = np.empty(len(items)), np.empty(len(items))
    clock = time.perf_counter
    for i, item in enumerate(items):
        start = clock()
        first(item)
        middle = clock()
        second(item)
        a[i], b[i] = middle - start, clock() - middle
    return a * 1e3, b * 1e3


def stats(ms: np.ndarray) -> dict[str, float]:
    return {
        "p50": round(float(np.percentile(ms, 50)), 3),
        "p90": round(float(np.percentile(ms, 90)), 3),
        "p99": round(float(np.percentile(ms, 99)), 3),
        "mean": round(float(ms.mean()), 3),
    }


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
    except OSError:  # not Linux: the peak is the best we have
        return peak_rss_mb()
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def machine() -> dict[str, Any]:
    from importlib import metadata

    cpu = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    for package in ("onnxruntime", "tokenizers", "torch", "sentence-transformers", "redisvl", "redis", "hiredis"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[package] = metadata.version(package)
    info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def name(kind: str) -> str:
    return f"bench-{kind}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def cleanup(*closers: Callable[[], Any]) -> Iterator[list[Callable[[], Any]]]:
    later = list(closers)
    try:
        yield later
    finally:
        for close in reversed(later):
            with contextlib.suppress(Exception):
                close()


# --------------------------------------------------------------------------- measurements
def upstream_router(url: str, router_name: str) -> Any:
    """RedisVL's own SemanticRouter with HFTextVectorizer on the packaged model, the default config's routes."""
    from redisvl.extensions.router import Route as UpstreamRoute
    from redisvl.extensions.router import RoutingConfig as UpstreamConfig
    from redisvl.extensions.router import SemanticRouter as UpstreamRouter
    from redisvl.utils.vectorize import HFTextVectorizer

    config = pretrained.read("default")
    routes = [
        UpstreamRoute(
            name=r.name,
            references=[ref.text for ref in r.references],
            distance_threshold=r.distance_threshold,
            metadata={"model": r.model or ""},
        )
        for r in config.routes
    ]
    return UpstreamRouter(
        name=router_name,
        routes=routes,
        vectorizer=HFTextVectorizer(model=_local_model_path()),
        # RedisVL has no top-k aggregation; avg is its default. Latency does not depend on it.
        routing_config=UpstreamConfig(max_k=1),
        redis_url=url,
        overwrite=True,
    )


CHILD = r"""
import json, sys, time
from redisvl_llmrouter import SemanticRouter
router = SemanticRouter.from_pretrained("default", name=sys.argv[1])
match = router("how do I reverse a linked list in place?")
done = time.time()
import os
rss = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
print(json.dumps({"done": done, "route": match.name, "backend": getattr(router.vectorizer, "backend", "?"),
                  "rss_mb": round(rss, 1),
                  "torch_imported": "torch" in sys.modules, "transformers_imported": "transformers" in sys.modules}))
router.delete()
router.close()
"""


def cold_start(url: str | None) -> dict[str, Any]:
    """Wall time from spawning ``python`` to the first route returned, median of a few runs."""
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    if url:
        env["REDIS_URL"] = url
    runs, info = [], {}
    for _ in range(COLD_START_RUNS):
        start = time.time()
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, name("cold")], env=env, capture_output=True, text=True, timeout=300
        )
        if proc.returncode != 0:
            raise RuntimeError(f"cold-start child failed:\n{proc.stderr[-2000:]}")
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        runs.append(info["done"] - start)
    return {"median_s": round(float(np.median(runs)), 3), "runs_s": [round(r, 3) for r in runs], **info}


def redisvl_cache_hit(url: str, text: str, vector: list[float]) -> dict[str, Any]:
    """RedisVL's EmbeddingsCache on a hit: the bare get, and a router whose vectorizer uses it (LRU off)."""
    from redisvl.extensions.cache.embeddings import EmbeddingsCache

    cache = EmbeddingsCache(name=name("embcache"), redis_url=url)
    model = DEFAULT_MODEL
    with cleanup(cache.clear) as later:
        cache.set(content=text, model_name=model, embedding=vector)
        timed_ms(lambda _: cache.get(content=text, model_name=model), range(200))  # warm the client
        get_ms = timed_ms(lambda _: cache.get(content=text, model_name=model), range(CACHE_HIT_RUNS))
        vectorizer = MiniLMVectorizer(cache=cache)
        router = SemanticRouter.from_pretrained(
            "default", name=name("rvlcache"), vectorizer=vectorizer, redis_url=url, embedding_cache_size=0
        )
        later += [router.close, router.delete]
        router(text)  # fills the cache
        hit_ms = timed_ms(lambda _: router(text), range(CACHE_HIT_RUNS))
    return {"get": stats(get_ms), "route": stats(hit_ms)}


def lru_hit_us(router: SemanticRouter, text: str) -> float:
    cache = router._core._cache
    cache.get(text)
    return round(float(np.percentile(timed_ms(cache.get, [text] * CACHE_HIT_RUNS), 50)) * 1e3, 3)


def agreement(url: str, sample: int | None = None) -> dict[str, Any]:
    """Top-1 route of fp32 ONNX and int8 ONNX against torch over every shared prompt (full length).

    ``sample`` keeps that many prompts of each file's share, drawn at random (seeded): torch over
    all 16k prompts takes long on a slow or busy machine.
    """
    files = shared_prompts()
    if not files:
        return {"skipped": f"no shared data at {DATA_DIR}"}
    if sample:
        total = sum(len(p) for p in files.values())
        rng = random.Random(SEED)
        files = {f: rng.sample(p, max(1, round(sample * len(p) / total))) for f, p in files.items()}
    texts = [p for prompts in files.values() for p in prompts]
    owner = [f for f, prompts in files.items() for _ in prompts]
    backends = {
        "torch": MiniLMVectorizer(backend="torch"),
        "onnx": MiniLMVectorizer(backend="onnx"),
        "onnx_int8": MiniLMVectorizer(backend="onnx", quantize=True),
    }
    router = SemanticRouter.from_pretrained("default", name=name("agree"), redis_url=url)
    result: dict[str, Any] = {"prompts": len(texts), "files": {f: len(p) for f, p in files.items()}}
    routes: dict[str, list[str | None]] = {}
    vectors: dict[str, np.ndarray] = {}
    with cleanup(router.close, router.delete):
        for key, vectorizer in backends.items():
            gc.collect()
            start = time.perf_counter()
            vectors[key] = np.asarray(vectorizer.embed_many(texts, batch_size=64), dtype=np.float32)
            seconds = time.perf_counter() - start
            result[f"{key}_embed_many_prompts_per_s"] = round(len(texts) / seconds, 1)
            routes[key] = []
            for i in range(0, len(texts), 2000):
                routes[key] += [m.name for m in router.route_batch(vectors=vectors[key][i : i + 2000].tolist())]
    for key in ("onnx", "onnx_int8"):
        same = [a == b for a, b in zip(routes[key], routes["torch"], strict=True)]
        cosine = (vectors[key] * vectors["torch"]).sum(axis=1)
        result[key] = {
            "agreement_top1": round(sum(same) / len(same), 5),
            "disagreements": len(same) - sum(same),
            "per_file": {
                f: round(float(np.mean([s for s, o in zip(same, owner, strict=True) if o == f])), 5) for f in files
            },
            "cosine_to_torch": {
                "min": round(float(cosine.min()), 6),
                "p01": round(float(np.percentile(cosine, 1)), 6),
                "mean": round(float(cosine.mean()), 6),
            },
        }
    return result


def first_use_build_s() -> float | None:
    """A source install's one slow step: writing the fp32 ONNX model from the safetensors weights (empty cache)."""
    if vz._bundled():
        return None  # a wheel install carries the model: nothing to build
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        vz._ensure_exported(vz.onnx_model_path(cache_dir=cache), quantize=False)
        return round(time.perf_counter() - start, 3)


def install_footprint(extras: str = "embedded,onnx") -> dict[str, Any]:
    """An install as a new user gets it: this tree's wheel with ``extras`` (default torch-free) in a fresh venv.

    Size is what the install adds to an empty venv (pip and setuptools come with every venv);
    first use is a fresh process in it, outside the repo, with an empty model cache and its own
    embedded Redis: import, ``from_pretrained("default")``, first route.
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pip = [sys.executable, "-m", "pip"]
        subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp, str(ROOT)], check=True)
        (wheel,) = root.glob("redisvl_llmrouter-*.whl")
        for venv in ("empty", "venv"):
            subprocess.run([sys.executable, "-m", "venv", str(root / venv)], check=True)
        python = str(root / "venv" / "bin" / "python")
        constraints = str(ROOT / "constraints.txt")
        subprocess.run([python, "-m", "pip", "install", "-q", "-c", constraints, f"{wheel}[{extras}]"], check=True)
        size = tree_mb(root / "venv") - tree_mb(root / "empty")
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env["LLMROUTER_CACHE_DIR"] = str(root / "cache")
        start = time.time()
        proc = subprocess.run([python, "-c", CHILD, name("install")], env=env, cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"first use in the fresh install failed:\n{proc.stderr[-2000:]}")
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        return {
            "extras": extras,
            "wheel_mb": round(wheel.stat().st_size / 2**20, 1),
            "size_mb": round(size, 1),
            "first_use_s": round(info["done"] - start, 3),
            "first_use_built_anything": (root / "cache").exists(),
            **{k: info[k] for k in ("route", "backend", "torch_imported", "rss_mb")},
        }


def tree_mb(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20


def measure_int8(
    out: dict[str, Any], url: str, warm: list[str], single: list[str], batch: list[str], later: list[Any]
) -> None:
    """The same single-query and batch measurements with ``MiniLMVectorizer(quantize=True)``."""
    int8 = SemanticRouter.from_pretrained(
        "default", name=name("int8"), redis_url=url, vectorizer=MiniLMVectorizer(quantize=True)
    )
    later += [int8.close, int8.delete]
    for q in warm:
        int8(q)
    gc.collect()
    out["route_int8_ms"] = stats(timed_ms(int8, single))
    out["route_int8_p50_ms"], out["route_int8_p99_ms"] = out["route_int8_ms"]["p50"], out["route_int8_ms"]["p99"]
    start = time.perf_counter()
    int8.route_batch(batch)
    out["batch_qps_int8"] = round(len(batch) / (time.perf_counter() - start), 1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    url = resolve_url()
    info = machine()
    queries, source = make_queries(args.queries + BATCH_QUERIES + WARMUP, args.max_chars)
    warm, single, batch = queries[:WARMUP], queries[WARMUP : WARMUP + args.queries], queries[WARMUP + args.queries :]
    out: dict[str, Any] = {"machine": info, "redis": "REDIS_URL" if os.environ.get("REDIS_URL") else "embedded"}

    out["first_use_build_s"] = first_use_build_s()
    t0 = time.perf_counter()
    router = SemanticRouter.from_pretrained("default", name=name("router"), redis_url=url)
    out["router_load_s_in_process"] = round(time.perf_counter() - t0, 3)
    vectorizer = router.vectorizer
    out["backend"] = getattr(vectorizer, "backend", type(vectorizer).__name__)
    tokenizer = getattr(vectorizer, "_encoder", None)
    if hasattr(tokenizer, "tokenizer"):
        tokens = [len(ids) for ids in tokenizer.tokenizer.encode_batch(single)]
        out["query_tokens"] = {"p50": float(np.median(tokens)), "p90": float(np.percentile(tokens, 90))}
    out["queries"] = {
        "count": len(single),
        "source": source,
        "chars_p50": float(np.median([len(q) for q in single])),
        "length": f"cut to {args.max_chars} chars" if args.max_chars else "lengths of default.queries.yaml",
    }

    with cleanup(router.close, router.delete) as later:
        for q in warm:
            router(q)
        gc.collect()
        route = timed_ms(router, single)
        out["route_ms"] = stats(route)
        out["route_p50_ms"], out["route_p99_ms"] = out["route_ms"]["p50"], out["route_ms"]["p99"]
        # where a route's time goes: the embedding alone, and a cache hit (search + ranking)
        out["embed_only_ms"] = stats(timed_ms(lambda q: vectorizer.embed_many([q]), single[:300]))
        hit = "hello, how are you?"
        router(hit)
        out["cache_hit_ms"] = stats(timed_ms(lambda _: router(hit), range(CACHE_HIT_RUNS)))
        out["cache_hit_p50_ms"] = out["cache_hit_ms"]["p50"]
        out["lru_get_p50_us"] = lru_hit_us(router, hit)

        router.route_batch(warm)  # warm the batch path (these texts are cached; the measured ones are not)
        gc.collect()
        start = time.perf_counter()
        matches = router.route_batch(batch)
        seconds = time.perf_counter() - start
        assert len(matches) == len(batch)
        out["batch_qps"] = round(len(batch) / seconds, 1)
        out["batch_queries"] = len(batch)
        start = time.perf_counter()
        vectorizer.embed_many(batch, batch_size=64)
        out["batch_embed_only_qps"] = round(len(batch) / (time.perf_counter() - start), 1)
        out["rss_mb"] = rss_mb()
        out["torch_imported_before_rss"] = "torch" in sys.modules

        if out["backend"] == "onnx":
            print("int8 ...", file=sys.stderr)
            measure_int8(out, url, warm, single, batch, later)

        print("cache comparison ...", file=sys.stderr)
        out["cache_redisvl"] = redisvl_cache_hit(url, hit, vectorizer.embed(hit))
        out["cache_hit_redisvl_p50_ms"] = out["cache_redisvl"]["route"]["p50"]

        print("cold start ...", file=sys.stderr)
        out["cold_start"] = cold_start(url)
        out["cold_start_s"] = out["cold_start"]["median_s"]
        out["cold_start_embedded_redis"] = cold_start(None)
        out["cold_start_embedded_redis_s"] = out["cold_start_embedded_redis"]["median_s"]

        print("torch backend and upstream ...", file=sys.stderr)
        torch_router = SemanticRouter.from_pretrained(
            "default", name=name("torch"), redis_url=url, vectorizer=MiniLMVectorizer(backend="torch")
        )
        later += [torch_router.close, torch_router.delete]
        for q in warm:
            torch_router(q)
        out["route_torch_ms"] = stats(timed_ms(torch_router, single))
        out["route_torch_p50_ms"] = out["route_torch_ms"]["p50"]

        upstream = upstream_router(url, name("upstream"))
        later.append(upstream.delete)
        # Paired: each query goes to a fresh router of ours (no embedding cache) and then to the
        # upstream, so both see the same load on a shared machine; the ratio is taken from this run.
        paired = SemanticRouter.from_pretrained("default", name=name("paired"), redis_url=url, embedding_cache_size=0)
        later += [paired.close, paired.delete]
        for q in warm:
            upstream(q)
            paired(q)
        gc.collect()
        ours_ms, upstream_ms = timed_pairs(paired, upstream, single)
        out["upstream_ms"], out["paired_route_ms"] = stats(upstream_ms), stats(ours_ms)
        out["upstream_p50_ms"], out["upstream_p99_ms"] = out["upstream_ms"]["p50"], out["upstream_ms"]["p99"]
        out["upstream_over_route_p50"] = round(out["upstream_p50_ms"] / out["paired_route_ms"]["p50"], 2)
        out["upstream_over_route_p99"] = round(out["upstream_p99_ms"] / out["paired_route_ms"]["p99"], 2)
        if "route_int8_p50_ms" in out:
            out["upstream_over_route_int8_p50"] = round(out["upstream_p50_ms"] / out["route_int8_p50_ms"], 2)

    if args.agreement and out["backend"] != "onnx":
        out["agreement"] = {"skipped": "the ONNX backend is not available (pip install 'redisvl-llmrouter[onnx]')"}
    elif args.agreement:
        print("agreement over the shared prompts (torch over every prompt: minutes) ...", file=sys.stderr)
        out["agreement"] = agreement(url, args.agreement_sample)
        if "onnx" in out["agreement"]:
            out["onnx_agreement_top1"] = out["agreement"]["onnx"]["agreement_top1"]
            out["int8_agreement_top1"] = out["agreement"]["onnx_int8"]["agreement_top1"]
    if args.install:
        print("torch-free install in a fresh venv (minutes) ...", file=sys.stderr)
        out["install"] = install_footprint()
        out["install_size_mb"], out["install_first_use_s"] = out["install"]["size_mb"], out["install"]["first_use_s"]
        out["install_with_torch"] = install_footprint("embedded,onnx,torch")
        out["install_with_torch_size_mb"] = out["install_with_torch"]["size_mb"]
    out["rss_total_mb"] = rss_mb()
    out["peak_rss_mb"] = peak_rss_mb()
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


def table(out: dict[str, Any]) -> str:
    rows = [
        ("backend", out["backend"], ""),
        ("route_p50_ms", out["route_p50_ms"], "<= 3"),
        ("route_p99_ms", out["route_p99_ms"], "<= 10"),
        ("route_torch_p50_ms (our router, torch)", out["route_torch_p50_ms"], ""),
        ("upstream_p50_ms (RedisVL + HF torch)", out["upstream_p50_ms"], ""),
        ("upstream_p99_ms", out["upstream_p99_ms"], ""),
        ("our router p50_ms, paired with upstream", out["paired_route_ms"]["p50"], ""),
        ("upstream / route (p50, paired)", out["upstream_over_route_p50"], ">= 5"),
        ("embed only p50_ms", out["embed_only_ms"]["p50"], ""),
        ("batch_qps", out["batch_qps"], ">= 600"),
        ("batch embedding only, texts/s", out["batch_embed_only_qps"], ""),
        ("cache_hit_p50_ms (in-process LRU)", out["cache_hit_p50_ms"], "<= 0.5"),
        ("cache_hit_p50_ms (RedisVL EmbeddingsCache)", out["cache_hit_redisvl_p50_ms"], ""),
        ("LRU get p50_us", out["lru_get_p50_us"], ""),
        ("EmbeddingsCache get p50_ms", out["cache_redisvl"]["get"]["p50"], ""),
        ("cold_start_s", out["cold_start_s"], "<= 3"),
        ("cold_start_embedded_redis_s", out["cold_start_embedded_redis_s"], ""),
        ("rss_mb (warm router) / total", f"{out['rss_mb']} / {out['rss_total_mb']}", ""),
        ("rss_mb of a fresh process after 1st route", out["cold_start"]["rss_mb"], ""),
        ("first_use_build_s (source install, empty cache)", out["first_use_build_s"], ""),
    ]  # fmt: skip
    if "install" in out:
        rows += [
            ("install_size_mb ([embedded,onnx], fresh venv)", out["install_size_mb"], "< 500"),
            ("install_first_use_s (fresh install, 1st route)", out["install_first_use_s"], ""),
            ("install size with torch ([embedded,onnx,torch])", out["install_with_torch_size_mb"], ""),
        ]
    if "route_int8_p50_ms" in out:
        rows += [
            ("route_int8_p50_ms / p99 (quantize=True)", f"{out['route_int8_p50_ms']} / {out['route_int8_p99_ms']}", ""),
            ("upstream / route_int8 (p50)", out["upstream_over_route_int8_p50"], ""),
            ("batch_qps_int8", out["batch_qps_int8"], ""),
        ]
    if "onnx_agreement_top1" in out:
        rows += [
            ("onnx_agreement_top1 (fp32)", out["onnx_agreement_top1"], ">= 0.99"),
            ("int8_agreement_top1", out["int8_agreement_top1"], ""),
        ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'metric':<{width}}  {'value':>14}  target", "-" * (width + 26)]
    lines += [f"{label:<{width}}  {value!s:>14}  {target}" for label, value, target in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, type=Path, help="write the results here")
    parser.add_argument("--queries", type=int, default=1000, help="single queries to time (default 1000)")
    parser.add_argument("--max-chars", type=int, default=None, help="cut every query to this many characters")
    parser.add_argument("--agreement", action="store_true", help="also measure ONNX/int8 vs torch route agreement")
    parser.add_argument("--agreement-sample", type=int, default=None, help="with --agreement: about N prompts")
    parser.add_argument("--install", action="store_true", help="also measure the torch-free install (fresh venv)")
    args = parser.parse_args(argv)
    out = run(args)
    out["command"] = " ".join(["python", "benchmarks/latency.py", *(argv if argv is not None else sys.argv[1:])])
    args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
