"""Reports on the decisions log: what the router spent, saved and answered, by tier and model, over time.

Pure: :func:`summarise` turns log entries (as :func:`~redisvl_llmrouter.observability.decisions.parse_entries`
returns them) into a :class:`Report`; :func:`render` prints it; :func:`plot` draws it. Reading the
log is the shells' job (:func:`read_command` builds each command; the CLI and the dashboard send them).

Definitions, so the numbers can be checked by hand:

* a *request* is a ``completion`` entry; *errors* are those with ``status`` ``error``;
* *cost* sums the provider-reported usage priced by the catalog; *baseline* sums what the same tokens
  would have cost on the gateway's baseline model (``baseline_model``; by default the dearest, the
  "always use the most expensive model" bill), and *saving* is ``baseline - cost`` over the requests
  where both are known (negative where answers came from a dearer model than the baseline);
* *unpriced* counts answered requests whose cost is unknown (a model without a catalog price, or no
  usage reported): they are left out of *cost*, not counted as free, and the text says how many
  (a slice with none priced shows its cost as ``-``);
* *cache hit rate* is cache hits over answered requests (``/stats`` and Prometheus count the cache's
  own lookups, hits and misses, instead: requests that are not cacheable make no lookup);
* *quality* is the mean of ``feedback`` entries. Each counts under the model it names (the one that
  answered, unless the feedback named another) and, when that is the model that answered, under the
  request's route too (feedback on a request outside the window counts under its model only);
  repeated feedback on one request and model counts once, the latest value, as in the outcome memory;
* a request without a tier is reported under ``(passthrough)`` (a concrete model was asked for),
  ``(cache)`` (a routed request answered from the cache) or ``(unmatched)``;
* latency percentiles are over answered requests (cache hits included), nearest-rank;
* *fallbacks* counts answered requests whose answer came from a fallback model (not the models a
  failed request went through);
* *breaker trips* come from the breakers' own counters in Redis (how often each opened, ever).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from redisvl_llmrouter import shared_clock
from redisvl_llmrouter.errors import ConfigError
from redisvl_llmrouter.observability.decisions import parse_entries, stream_key
from redisvl_llmrouter.ops import Command, Op, Pipeline
from redisvl_llmrouter.search import as_text
from redisvl_llmrouter.stored_definition import load_definition, parse_definition

__all__ = [
    "Breakdown",
    "Report",
    "escape_controls",
    "format_usd",
    "load",
    "parse_since",
    "plot",
    "read_command",
    "read_entries",
    "render",
    "summarise",
]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: Log entries one read takes: the whole log in one ``XRANGE`` held Redis (and every gateway on it) for
#: about 150 ms at 100,000 entries; pages of this size hold it a few milliseconds each.
READ_PAGE = 5_000


class Breakdown(BaseModel):
    """Figures for one slice of the traffic (all of it, one tier, or one model)."""

    requests: int = 0
    errors: int = 0
    cost_usd: float = 0.0
    baseline_usd: float = 0.0
    saving_usd: float = 0.0
    saving_fraction: float | None = None
    unpriced: int = 0
    """Answered requests whose cost is unknown: not in ``cost_usd`` (nor in the baseline or saving)."""
    unbaselined: int = 0
    """Answered requests of known cost but none on the baseline (a configured baseline model that had lost
    its price): in ``cost_usd``, not in the baseline or the saving."""
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    cache_hits: int = 0
    fallbacks: int = 0
    quality: float | None = None
    """Mean reported quality of this slice's answers, when feedback arrived."""
    feedback: int = 0


class Series(BaseModel):
    """Traffic and spend per time bucket (bucket start in ms since the epoch)."""

    bucket_s: int = 60
    t_ms: list[int] = Field(default_factory=list)
    requests_by_model: dict[str, list[int]] = Field(default_factory=dict)
    requests_by_route: dict[str, list[int]] = Field(default_factory=dict)
    cost_usd: list[float] = Field(default_factory=list)
    baseline_usd: list[float] = Field(default_factory=list)


class Report(BaseModel):
    """Everything ``llmrouter report`` prints, as data (``--json`` dumps this)."""

    router: str
    since_ms: int | None = None
    first_ms: int | None = None
    last_ms: int | None = None
    total: Breakdown = Field(default_factory=Breakdown)
    cache_hit_rate: float | None = None
    by_route: dict[str, Breakdown] = Field(default_factory=dict)
    by_model: dict[str, Breakdown] = Field(default_factory=dict)
    errors_by_kind: dict[str, int] = Field(default_factory=dict)
    breakers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    series: Series = Field(default_factory=Series)
    truncated_ms: int | None = None
    """Set when only the newest entries were read (a ``limit``): the time of the oldest one read.
    The figures then cover the window from there on, not all of it."""


def parse_since(value: str | None, now_s: float | None = None, option: str = "--since") -> int | None:
    """``--since`` as ms since the epoch: a duration back from now (``90s``, ``15m``, ``2h``, ``7d``),
    an ISO date/time (``2026-11-23`` or ``2026-11-23T10:00``, UTC unless it says otherwise), or None.
    Errors name ``option`` as the caller's user wrote it (``--since``, or a URL's ``since``)."""
    if value is None or value == "":
        return None
    now_s = shared_clock.now_ms() / 1000 if now_s is None else now_s  # the log's times are Redis's
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", value)
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
        if not math.isfinite(seconds):  # a number too long for a float: no such duration, no such time
            shown = value.strip()
            raise ValueError(
                f"{option} {shown[:24]!r}{f'... ({len(shown)} characters)' if len(shown) > 24 else ''}: "
                f"the duration is too large to compute; leave {option} out to report the whole log"
            )
        return max(0, int((now_s - seconds) * 1000))  # before 1970: all
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{option} {value!r}: give a duration back from now (30m, 2h, 7d) or an ISO date (2026-11-23T10:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0, int(moment.timestamp() * 1000))


def read_command(
    router: str, since_ms: int | None = None, limit: int | None = None, after: str | None = None
) -> tuple[Any, ...]:
    """The log entries since ``since_ms`` (all of them without it), oldest first, a page of ``READ_PAGE``
    (the next page: ``after`` the last id read); with ``limit``, only the newest ``limit``, newest first."""
    start = "-" if since_ms is None else f"{since_ms}-0"
    if limit is None:
        return ("XRANGE", stream_key(router), start if after is None else f"({after}", "+", "COUNT", str(READ_PAGE))
    return ("XREVRANGE", stream_key(router), "+", start, "COUNT", str(limit))


def read_entries(router: str, since_ms: int | None = None, limit: int | None = None) -> Op[list[Any]]:
    """The raw log entries :func:`read_command` describes, every page of them."""
    raw: list[Any] = []
    after = None
    while True:
        page = list((yield Command(read_command(router, since_ms, limit, after))) or [])
        raw += page
        if limit is not None or len(page) < READ_PAGE:
            return raw
        after = as_text(page[-1][0])  # the raw id: a malformed entry is skipped only when parsed


def load(router: str, since_ms: int | None = None, limit: int | None = None, until_ms: int | None = None) -> Op[Report]:
    """Read the log (and the breakers of its models and of the router's own) and summarise: one
    operation for every shell.

    ``limit`` keeps only the newest entries (the dashboard's refreshes stay cheap on a busy log).
    The router's models that the log does not name are listed only when their breaker ever opened.
    """
    entries = parse_entries((yield from read_entries(router, since_ms, limit)))
    truncated_ms = (
        min((int(e.get("ts") or 0) for e in entries), default=None) if limit and len(entries) >= limit else None
    )
    logged = {str(e["model"]) for e in entries if e.get("model")}
    try:
        definition = parse_definition((yield from load_definition(router)))
        own = {m for r in definition.routes for m in r.models} | set(definition.catalog.names)
    except ConfigError:  # no router stored under that name (or not one): only the log's models
        own = set()
    models = sorted(logged | own)
    breakers: dict[str, dict[str, Any]] = {}
    try:
        from redisvl_llmrouter.gateway import breaker
    except ImportError:  # the gateway extra is not installed: no breakers to report
        models = []
    if models:
        replies = yield Pipeline(tuple(breaker.read_commands(models)))
        now_ms = shared_clock.now_ms()  # as the gateways read it
        for model, reply in zip(models, replies, strict=True):
            state = breaker.parse(reply)
            cooldown = breaker.stored_cooldown_ms(reply)
            if cooldown is not None:  # an open breaker past its cooldown is half-open, as the gateways see it
                state = breaker.state_at(state, now_ms, cooldown)
            if model in logged or state.trips or state.state != "closed":
                breakers[model] = {"state": state.state, "trips": state.trips}
    report = summarise(entries, router, since_ms, breakers, until_ms=until_ms)
    report.truncated_ms = truncated_ms
    return report


def _percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (a value that was observed), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return round(float(ordered[rank - 1]), 3)


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class _Accumulator:
    """Running sums for one slice; :meth:`result` turns them into a :class:`Breakdown`."""

    __slots__ = (
        "baseline",
        "cache",
        "cost",
        "errors",
        "fallbacks",
        "latencies",
        "qualities",
        "requests",
        "saving",
        "unbaselined",
        "unpriced",
    )

    def __init__(self) -> None:
        self.requests = self.errors = self.cache = self.fallbacks = self.unpriced = self.unbaselined = 0
        self.cost = self.baseline = self.saving = 0.0
        self.latencies: list[float] = []
        self.qualities: list[float] = []

    def add(self, entry: Mapping[str, Any]) -> None:
        self.requests += 1
        if entry.get("status") == "error":
            self.errors += 1
        elif (latency := _number(entry.get("latency_ms"))) is not None:
            self.latencies.append(latency)
        cost, baseline = _number(entry.get("cost")), _number(entry.get("baseline_cost"))
        if cost is not None:
            self.cost += cost
            if baseline is not None:
                self.baseline += baseline
                self.saving += baseline - cost
            else:
                self.unbaselined += 1
        elif entry.get("status") != "error":  # answered at a price nobody knows: not free
            self.unpriced += 1
        self.cache += bool(entry.get("cache"))
        if entry.get("status") != "error" and (_number(entry.get("fallbacks")) or 0) > 0:
            self.fallbacks += 1

    def result(self) -> Breakdown:
        return Breakdown(
            requests=self.requests,
            errors=self.errors,
            cost_usd=self.cost,
            baseline_usd=self.baseline,
            saving_usd=self.saving,
            saving_fraction=self.saving / self.baseline if self.baseline > 0 else None,
            unpriced=self.unpriced,
            unbaselined=self.unbaselined,
            latency_p50_ms=_percentile(self.latencies, 50),
            latency_p99_ms=_percentile(self.latencies, 99),
            cache_hits=self.cache,
            fallbacks=self.fallbacks,
            quality=sum(self.qualities) / len(self.qualities) if self.qualities else None,
            feedback=len(self.qualities),
        )


def _route_of(entry: Mapping[str, Any]) -> str:
    """The tier a request is reported under: its route, else what kind of request it was."""
    if entry.get("route"):
        return str(entry["route"])
    if entry.get("strategy") == "passthrough":
        return "(passthrough)"
    return "(cache)" if entry.get("cache") else "(unmatched)"


def _bucket_seconds(first_ms: int, last_ms: int, buckets: int) -> int:
    """A round bucket width giving at most about ``buckets`` buckets over the span."""
    span_s = max(1.0, (last_ms - first_ms) / 1000)
    for width in (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400):
        if span_s / width <= buckets:
            return width
    return 30 * 86400


def summarise(
    entries: Iterable[Mapping[str, Any]],
    router: str,
    since_ms: int | None = None,
    breakers: Mapping[str, Mapping[str, Any]] | None = None,
    buckets: int = 60,
    until_ms: int | None = None,
) -> Report:
    """Summarise log entries (any order) into a :class:`Report`; ``breakers`` maps model to its state.

    The time series spans the entries, or ``since_ms`` to ``until_ms`` when both are given (a live
    view's window, so an idle stretch shows as zeros rather than not at all).
    """
    entries = list(entries)
    completions = [
        e for e in entries if e.get("type") == "completion" and (since_ms is None or int(e.get("ts") or 0) >= since_ms)
    ]
    # Feedback is idempotent per request and model, as in the outcome memory: the latest report stands.
    latest: dict[tuple[str, str], Mapping[str, Any]] = {}
    for e in sorted((e for e in entries if e.get("type") == "feedback"), key=lambda e: int(e.get("ts") or 0)):
        latest[(str(e.get("request_id")), str(e.get("model")))] = e
    feedback = list(latest.values())
    completions.sort(key=lambda e: int(e.get("ts") or 0))

    total, by_route, by_model = _Accumulator(), defaultdict(_Accumulator), defaultdict(_Accumulator)
    errors: dict[str, int] = defaultdict(int)
    served: dict[str, tuple[str, str]] = {}  # request id -> (route, model that answered)
    for entry in completions:
        route = _route_of(entry)
        model = str(entry.get("model") or "(none)")
        total.add(entry)
        by_route[route].add(entry)
        by_model[model].add(entry)
        if entry.get("status") == "error":
            errors[str(entry.get("error") or "unknown")] += 1
        if entry.get("request_id"):
            served[str(entry["request_id"])] = (route, model)
    for entry in feedback:
        quality = _number(entry.get("quality"))
        if quality is None or (since_ms is not None and int(entry.get("ts") or 0) < since_ms):
            continue
        route, answered = served.get(str(entry.get("request_id")), (None, None))
        model = str(entry.get("model") or answered or "(none)")
        total.qualities.append(quality)
        by_model[model].qualities.append(quality)
        if route is not None and model == answered:  # a route's quality is that of the answers it gave
            by_route[route].qualities.append(quality)

    report = Report(
        router=router,
        since_ms=since_ms,
        total=total.result(),
        by_route={k: v.result() for k, v in sorted(by_route.items())},
        by_model={k: v.result() for k, v in sorted(by_model.items())},
        errors_by_kind=dict(sorted(errors.items())),
        breakers={k: dict(v) for k, v in sorted((breakers or {}).items())},
    )
    answered = total.requests - total.errors
    report.cache_hit_rate = total.cache / answered if answered else None
    if completions:
        report.first_ms = int(completions[0].get("ts") or 0)
        report.last_ms = int(completions[-1].get("ts") or 0)
    if since_ms is not None and until_ms is not None:
        report.series = _series(completions, since_ms, until_ms, buckets)
    elif completions:
        report.series = _series(completions, report.first_ms or 0, report.last_ms or 0, buckets)
    return report


def _series(completions: Sequence[Mapping[str, Any]], first_ms: int, last_ms: int, buckets: int) -> Series:
    # The span covers every entry: one written after the reader took its clock (or by a host whose
    # clock runs ahead) lands in the last bucket's successors, not past the end of the lists.
    stamps = [int(e.get("ts") or 0) for e in completions]
    first_ms, last_ms = min([first_ms, *stamps]), max([last_ms, *stamps])
    width = _bucket_seconds(first_ms, last_ms, buckets)
    start = first_ms // (width * 1000) * width * 1000
    n = (last_ms - start) // (width * 1000) + 1
    series = Series(bucket_s=width, t_ms=[start + i * width * 1000 for i in range(n)])
    series.cost_usd, series.baseline_usd = [0.0] * n, [0.0] * n
    for entry in completions:
        i = (int(entry.get("ts") or 0) - start) // (width * 1000)
        model, route = str(entry.get("model") or "(none)"), _route_of(entry)
        series.requests_by_model.setdefault(model, [0] * n)[i] += 1
        series.requests_by_route.setdefault(route, [0] * n)[i] += 1
        cost, baseline = _number(entry.get("cost")), _number(entry.get("baseline_cost"))
        series.cost_usd[i] += cost or 0.0
        if cost is not None and baseline is not None:
            series.baseline_usd[i] += baseline
    return series


#: Decimals by size: below $1 at least 4 decimals and at least 2 significant digits, from $1 to the cent.
_USD_TIERS = ((1e-5, 7), (1e-4, 6), (1e-3, 5), (1.0, 4), (math.inf, 2))
#: The smallest amount printed with its digits; a nonzero amount below prints as ``<$0.000001``.
_USD_FLOOR = 1e-6


def format_usd(value: float) -> str:
    """Dollars as the report and the dashboard print them (the dashboard's ``fmt.usd`` follows the same
    rules, to the digit): the sign before the ``$``, thousands separated; to the cent from $1; below $1
    to 4 decimals, or more where 4 would leave fewer than 2 significant digits (``$0.0123``, ``$0.0020``,
    ``$0.00014``, ``$0.0000056``), so no amount shows as a lone rounded digit and a cost, its baseline
    and the saving read as consistent; a nonzero amount under $0.000001 as ``<$0.000001`` (not a wall
    of zeros).

    An amount that rounds up to the next size prints at that size's precision (``0.999999`` is
    ``$1.00``, as ``1`` is; ``0.00009999`` is ``$0.00010``). Ties round away from zero on the exact
    binary value, as JavaScript's ``toFixed`` does, so both print the same digits.
    """
    if not math.isfinite(value):  # no amount at all: unknown, as a slice without a known cost
        return "-"
    sign, amount = ("-" if value < 0 else ""), abs(value)
    if amount == 0:
        return "$0.0000"
    if amount < _USD_FLOOR:
        return f"{sign}<${_USD_FLOOR:.6f}"
    tier = next(i for i, (upper, _) in enumerate(_USD_TIERS) if amount < upper)
    for upper, decimals in _USD_TIERS[tier:]:
        rounded = Decimal(amount).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
        if float(rounded) < upper:  # else it rounded up into the next size: print it as that size
            break
    return f"{sign}${rounded:,.{decimals}f}"


def _cost(b: Breakdown) -> str:
    """A slice's cost as printed: ``-`` when it has requests but knows the cost of none ($0 would call
    unpriced traffic free, and failed requests may still be billed: a stream cut short)."""
    priced = b.requests - b.errors - b.unpriced
    return "-" if b.requests and not priced else format_usd(b.cost_usd)


def _cost_line(t: Breakdown) -> str:
    """The total's cost against the baseline, saying how many answered requests it leaves out for want
    of a known cost (the baseline and the saving leave out the same ones)."""
    priced = t.requests - t.errors - t.unpriced
    if not t.requests:  # nothing was spent, and nothing compared: not "$0.0000 against $0.0000"
        return "cost -: no requests in this window"
    if t.unpriced and not priced:
        return f"cost -: none of the {_requests(t.unpriced)} answered has a known cost, so no saving either"
    if t.requests and not priced:
        return "cost -: no request was answered, so no known cost and no saving"
    against = f", against {format_usd(t.baseline_usd)} on the baseline model"
    if t.unbaselined:  # the baseline priced only some: say which cost it is measured against
        against += (
            f" for the {_requests(priced - t.unbaselined)} it could price"
            f" (which cost {format_usd(t.baseline_usd - t.saving_usd)})"
        )
    line = (
        f"cost {format_usd(t.cost_usd)}"
        + (f" over {_requests(priced)} with a known cost" if t.unpriced else "")
        + f"{against}: saved {format_usd(t.saving_usd)} ({_share(t.saving_fraction)})"
    )
    return line + (f"; {_requests(t.unpriced)} without a known cost" if t.unpriced else "")


def _count(n: int, noun: str) -> str:
    """``1 request``, ``2 requests``, ``0 requests``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _requests(n: int) -> str:
    return _count(n, "request")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


#: The widest a name column grows before names are cut (in the middle, so distinct ends stay visible).
_NAME_WIDTH = 48


def escape_controls(text: str) -> str:
    """``text`` safe to print on one terminal line: every character that is not printable (a newline, a
    tab, an ANSI escape, a zero-width or bidi control) shown as its Python escape (``\\n``, ``\\x1b``)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _cell_name(name: str) -> str:
    """A name on one table line: control characters escaped, a long one cut in its middle."""
    shown = escape_controls(name)
    if len(shown) <= _NAME_WIDTH:
        return shown
    half = (_NAME_WIDTH - 1) // 2
    return f"{shown[:half]}…{shown[-(_NAME_WIDTH - 1 - half) :]}"


def _table(title: str, rows: Mapping[str, Breakdown]) -> list[str]:
    # The unpriced column shows only when some request had no known cost: the usual table stays as it was.
    unpriced = any(b.unpriced for b in rows.values())
    columns = [("requests", 8), ("errors", 6), ("cost", 11), ("saving", 7), ("p50 ms", 7), ("p99 ms", 7)]
    if unpriced:
        columns.insert(3, ("unpriced", 8))
    names = {name: _cell_name(name) for name in rows}
    width = max([28, len(title), *(len(n) for n in names.values())])
    lines = [f"{title:<{width}} " + " ".join(f"{name:>{w}}" for name, w in columns) + f" {'quality':>7}"]
    for name, b in rows.items():
        quality = "-" if b.quality is None else f"{b.quality:.2f} ({b.feedback})"
        lines.append(
            f"{names[name]:<{width}} {b.requests:>8} {b.errors:>6} {_cost(b):>11}"
            + (f" {b.unpriced:>8}" if unpriced else "")
            + f" {_share(b.saving_fraction):>7}"
            f" {_ms(b.latency_p50_ms):>7} {_ms(b.latency_p99_ms):>7} {quality:>7}"
        )
    return lines


def render(report: Report) -> str:
    """The report as text for a terminal."""
    from datetime import datetime

    def when(ms: int | None) -> str:
        return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    t = report.total
    lines = [
        f"router {escape_controls(report.router)}: {_requests(t.requests)}"
        f" from {when(report.first_ms)} to {when(report.last_ms)}",
        f"  {_cost_line(t)}",
        f"  latency p50 {_ms(t.latency_p50_ms)} ms, p99 {_ms(t.latency_p99_ms)} ms;"
        f" errors {t.errors} ({_share(t.errors / t.requests if t.requests else None)});"
        f" cache hit rate {_share(report.cache_hit_rate)}; fallbacks {t.fallbacks}",
    ]
    if t.feedback:
        lines.append(f"  quality {t.quality:.3f} from {_count(t.feedback, 'feedback report')}")
    if report.errors_by_kind:
        lines.append(
            "  errors by kind: " + ", ".join(f"{escape_controls(k)} {v}" for k, v in report.errors_by_kind.items())
        )
    if report.breakers:
        # The ones with something to say, by name; the quiet rest (closed, never tripped) counted: a
        # log may name hundreds of passthrough models.
        telling = {m: b for m, b in report.breakers.items() if b.get("state") != "closed" or b.get("trips")}
        quiet = len(report.breakers) - len(telling)
        parts = [
            f"{escape_controls(m)} {str(b.get('state', '?')).replace('_', '-')} ({_count(b.get('trips') or 0, 'trip')})"
            for m, b in telling.items()
        ]
        if quiet:
            parts.append(f"{'all' if not telling else quiet} {'other ' if telling else ''}closed, never tripped")
        lines.append("  breakers: " + ", ".join(parts))
    lines += ["", *_table("tier (route)", report.by_route), "", *_table("model", report.by_model)]
    return "\n".join(lines)


def plot(report: Report, path: str | Path) -> Path:
    """Draw traffic by model and cost against the baseline over time into ``path`` (PNG, SVG or PDF)."""
    import matplotlib

    matplotlib.use("Agg")
    from datetime import datetime

    import matplotlib.dates as mdates  # importing it registers the datetime axis converters
    from matplotlib.figure import Figure

    s = report.series
    times = [datetime.fromtimestamp(t / 1000, UTC) for t in s.t_ms]
    figure = Figure(figsize=(10, 6.5), layout="constrained")
    traffic, spend = figure.subplots(2, 1, sharex=True)
    if not times:  # nothing in the window: say so rather than draw an axis of 1 January 1970
        for axes in (traffic, spend):
            axes.set_axis_off()
        figure.suptitle(f"router {escape_controls(report.router)}: no requests in this window")
        path = Path(path)
        figure.savefig(path, dpi=110)
        return path
    bottom = [0] * len(times)
    width = s.bucket_s / 86400 * 0.9  # bar width in days, matplotlib's date unit
    for model, counts in sorted(s.requests_by_model.items()):
        traffic.bar(times, counts, width=width, bottom=bottom, label=model, align="edge")
        bottom = [a + b for a, b in zip(bottom, counts, strict=True)]
    traffic.set_ylabel(f"requests per {s.bucket_s} s")
    traffic.set_title(f"router {escape_controls(report.router)}: traffic by model")
    if s.requests_by_model:
        traffic.legend(fontsize="small", loc="upper left")
    cumulative_cost = _cumulative(s.cost_usd)
    cumulative_baseline = _cumulative(s.baseline_usd)
    marker = "o" if len(times) == 1 else None  # one bucket is one point: a line alone would not show
    spend.plot(times, cumulative_baseline, label="always the baseline model", linestyle="--", marker=marker)
    spend.plot(times, cumulative_cost, label="routed", marker=marker)
    spend.fill_between(times, cumulative_cost, cumulative_baseline, alpha=0.15, label="saving")
    spend.set_ylabel("cumulative cost (USD)")
    total = report.total
    unpriced = f" ({_requests(total.unpriced)} without a known cost)" if total.unpriced else ""
    spend.set_title(f"cost {_cost(total)}{unpriced}, saved {_share(total.saving_fraction)}")
    spend.legend(fontsize="small", loc="upper left")
    # Ticks that fit the span, from seconds to months (UTC, as the report's times).
    locator = mdates.AutoDateLocator(tz=UTC)
    spend.xaxis.set_major_locator(locator)
    spend.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    spend.set_xlabel("time (UTC)")
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path


def _cumulative(values: Sequence[float]) -> list[float]:
    out, running = [], 0.0
    for value in values:
        running += value
        out.append(running)
    return out
