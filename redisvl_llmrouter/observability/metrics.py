"""Prometheus metrics of the gateway (``GET /metrics``), with documented names and labels.

* ``llmrouter_requests_total{model, route, status}``: completed requests (``ok`` / ``error``)
* ``llmrouter_request_latency_seconds{model}``: histogram of end-to-end latency
* ``llmrouter_upstream_latency_seconds{model}``: histogram of successful provider calls
* ``llmrouter_cost_usd_total{model}``, ``llmrouter_baseline_usd_total{model}``: USD spent, and what
  the same answers would have cost on the baseline model (the saving is their difference, negative
  where an answer came from a dearer model: a counter could not go down)
* ``llmrouter_tokens_total{model, kind}``: prompt and completion tokens the providers processed (not cache hits)
* ``llmrouter_cache_requests_total{result}``: semantic cache lookups, ``hit`` / ``miss``
* ``llmrouter_fallbacks_total{model}``: answers given by a fallback model
* ``llmrouter_upstream_errors_total{model, reason}``: failed provider calls (``timeout``, ``server``, ...)
* ``llmrouter_routing_decisions_total{route, model, strategy}``: routing decisions
* ``llmrouter_queue_depth{model}``, ``llmrouter_queue_active{model}``: waiting and running calls
* ``llmrouter_queue_shed_total{model}``: requests refused or shed by a full queue
* ``llmrouter_breaker_state{model}``: 0 closed, 1 half-open, 2 open (shared, read from Redis)

Counters and histograms are per process; with ``--workers N`` the server runs prometheus-client's
multiprocess mode, so a scrape of any worker sums them all. Breaker states come from Redis. The
gauges count live workers only: a scrape first forgets the gauges of workers that are gone (killed,
or replaced by the supervisor), which prometheus-client would otherwise keep at their last values.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["BREAKER_VALUES", "MAX_OTHER_MODELS", "OTHER_MODELS_LABEL", "Metrics", "forget_dead_workers"]

BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}
#: Passthrough model names labelled by name, per process, before the rest share ``OTHER_MODELS_LABEL``.
MAX_OTHER_MODELS = 100
OTHER_MODELS_LABEL = "other"
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The gateway's metrics in their own registry (several gateways in one process do not clash)."""

    def __init__(self, known_models: Callable[[], Collection[str]] = tuple) -> None:
        """``known_models``: the router's models, always labelled by name; other (passthrough) names are
        labelled by name up to ``MAX_OTHER_MODELS`` of them, then as ``other``: clients choose those
        names, and every name would be series of its own for good."""
        self.registry = CollectorRegistry()
        self._children: dict[tuple[Any, ...], Any] = {}
        self._known_models = known_models
        self._other_models: set[str] = set()
        self._labelled: set[str] = set()  # names labelled as themselves (router models, first other ones)
        r = self.registry
        self.requests = Counter("llmrouter_requests", "Completed requests", ["model", "route", "status"], registry=r)
        self.latency = Histogram(
            "llmrouter_request_latency_seconds", "End-to-end latency", ["model"], buckets=_BUCKETS, registry=r
        )
        self.upstream_latency = Histogram(
            "llmrouter_upstream_latency_seconds", "Provider call latency", ["model"], buckets=_BUCKETS, registry=r
        )
        self.cost = Counter("llmrouter_cost_usd", "USD spent", ["model"], registry=r)
        self.baseline = Counter(
            "llmrouter_baseline_usd",
            "USD the same answers would have cost on the baseline model",
            ["model"],
            registry=r,
        )
        self.tokens = Counter("llmrouter_tokens", "Tokens", ["model", "kind"], registry=r)
        self.cache = Counter("llmrouter_cache_requests", "Semantic cache lookups", ["result"], registry=r)
        self.fallbacks = Counter("llmrouter_fallbacks", "Answers given by a fallback model", ["model"], registry=r)
        self.errors = Counter("llmrouter_upstream_errors", "Failed provider calls", ["model", "reason"], registry=r)
        self.decisions = Counter(
            "llmrouter_routing_decisions", "Routing decisions", ["route", "model", "strategy"], registry=r
        )
        multiprocess = "PROMETHEUS_MULTIPROC_DIR" in os.environ
        gauge_mode: dict[str, Any] = {"multiprocess_mode": "livesum"} if multiprocess else {}
        self.queue_depth = Gauge("llmrouter_queue_depth", "Requests waiting", ["model"], registry=r, **gauge_mode)
        self.queue_active = Gauge("llmrouter_queue_active", "Calls in progress", ["model"], registry=r, **gauge_mode)
        self.shed = Counter("llmrouter_queue_shed", "Requests refused or shed by a full queue", ["model"], registry=r)
        # Every process reads the breakers from Redis: the latest read is the truth, whichever worker made it.
        breaker_mode: dict[str, Any] = {"multiprocess_mode": "livemostrecent"} if multiprocess else {}
        self.breaker = Gauge(
            "llmrouter_breaker_state", "0 closed, 1 half-open, 2 open", ["model"], registry=r, **breaker_mode
        )

    def model_label(self, model: str) -> str:
        """The ``model`` label of ``model`` (see ``__init__``)."""
        if model in self._labelled:
            return model
        if model in self._known_models():
            self._labelled.add(model)  # a router model: by name for good (a set as small as the router)
            return model
        if len(self._other_models) < MAX_OTHER_MODELS:
            self._other_models.add(model)
            self._labelled.add(model)
            return model
        return OTHER_MODELS_LABEL

    def child(self, metric: Any, **labels: str) -> Any:
        """``metric.labels(**labels)``, looked up once per label set (the lookup is not free on a hot path)."""
        if "model" in labels:
            labels["model"] = self.model_label(labels["model"])
        key = (id(metric), *labels.items())
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(**labels)
        return found

    def render(self) -> bytes:
        """The text exposition format; in multiprocess mode, of every worker together."""
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            from prometheus_client import multiprocess

            forget_dead_workers(os.environ["PROMETHEUS_MULTIPROC_DIR"])
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


#: A live gauge's file in the multiprocess directory: ``gauge_<mode>_<pid>.db``.
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]*_(\d+)\.db")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def forget_dead_workers(directory: str) -> list[int]:
    """Remove the live gauges of worker processes that no longer exist; returns their pids.

    prometheus-client keeps a process's gauge file until ``mark_process_dead`` is called for it,
    and nobody calls it for a worker killed or replaced mid-call: its last queue depth would be
    added to every scrape for good. Counters and histograms stay (they are totals).
    """
    from prometheus_client import multiprocess

    pids = {
        int(m.group(1)) for p in Path(directory).glob("gauge_live*.db") if (m := _LIVE_GAUGE_FILE.fullmatch(p.name))
    }
    dead = sorted(pid for pid in pids if pid != os.getpid() and not _alive(pid))
    for pid in dead:
        with contextlib.suppress(FileNotFoundError):  # another worker's scrape removed it first
            multiprocess.mark_process_dead(pid, directory)
    return dead
