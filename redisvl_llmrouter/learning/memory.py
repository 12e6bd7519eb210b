"""The outcome memory's Redis layout: keys, the index, the atomic write script and reply parsing.

Like :mod:`redisvl_llmrouter.search` for the routes, this module builds commands and parses
replies; it performs no I/O. Layout of the memory of router ``NAME`` (every key carries the hash
tag ``{NAME}``, so a Lua script may touch several of them on a Redis Cluster too):

* ``llmrouter:{NAME}:outcome:<row id>`` — one hash per labelled prompt: ``embedding`` (float32
  bytes), ``o`` (the outcomes, see below), ``created`` (ms since the epoch), ``source``
  (``learn`` / ``feedback``), ``id``, ``tokens`` (the whole prompt's estimated tokens, which
  calibration prices as routing does: the text kept is only the routing window) and, unless
  ``store_text`` is off, ``text``.
* the index ``NAME:outcomes`` over that prefix: an HNSW cosine vector index (a bounded KNN stays
  well under a millisecond at 15,000 rows, where a FLAT scan does not).
* ``llmrouter:{NAME}:outcomes:models`` — a list, append-only: the column of each model in ``o``.
* ``llmrouter:{NAME}:outcomes:stats`` — a hash of running sums per model: ``n:<model>`` and
  ``q:<model>`` (observations and summed quality), ``nc:<model>`` and ``c:<model>`` (cost).
  The priors (each model's mean over the whole memory) come from it without a scan.
* ``llmrouter:{NAME}:outcomes:order`` — a sorted set of row ids in the order they were first written
  (a counter kept in the stats hash), for eviction.
* ``llmrouter:{NAME}:request:<request id>`` — a routed request awaiting feedback: its
  ``embedding``, ``model``, ``route``, ``tokens`` and (optionally) ``text``; it expires after
  ``feedback_ttl_s``.

``o`` holds three float32 values per model column — quality, cost, latency (NaN: not observed) —
hex-encoded, so that KNN replies parse with one ``numpy`` call per reply rather than one JSON
document per row, and so that clients decoding replies as text read it too.

Writes go through one Lua script (:data:`UPSERT_SCRIPT`): it sets the given models' values in a
row, adjusts the running sums by the difference (so feedback repeated for the same request and
model replaces the earlier value instead of counting twice), records new rows for eviction, and
evicts the oldest rows past ``max_rows`` — all atomically, so several processes can learn at once.

Eviction rule: first in, first out by the time a row was first written; updating a row's outcomes
does not renew it.
"""

from __future__ import annotations

import binascii
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from redisvl_llmrouter.search import as_text, search_documents

__all__ = [
    "EMBEDDING_FIELD",
    "UPSERT_SCRIPT",
    "Neighbours",
    "Observation",
    "create_index_command",
    "decode_outcomes",
    "encode_outcomes",
    "index_name",
    "knn_command",
    "models_key",
    "order_key",
    "parse_models",
    "parse_neighbours",
    "parse_stats",
    "prefix",
    "request_key",
    "row_id_for_text",
    "row_key",
    "stats_key",
    "upsert_args",
]

EMBEDDING_FIELD = "embedding"
#: Values stored per model column in ``o``: quality, cost, latency.
FIELDS_PER_MODEL = 3


def index_name(router: str) -> str:
    return f"{router}:outcomes"


def _base(router: str) -> str:
    return f"llmrouter:{{{router}}}"


def prefix(router: str) -> str:
    """Key prefix of the memory rows (the outcome index covers exactly these keys)."""
    return f"{_base(router)}:outcome:"


def row_key(router: str, row_id: str) -> str:
    return prefix(router) + row_id


def models_key(router: str) -> str:
    return f"{_base(router)}:outcomes:models"


def stats_key(router: str) -> str:
    return f"{_base(router)}:outcomes:stats"


def order_key(router: str) -> str:
    return f"{_base(router)}:outcomes:order"


def request_key(router: str, request_id: str) -> str:
    return f"{_base(router)}:request:{request_id}"


def row_id_for_text(text: str) -> str:
    """A row's id when it is identified by its prompt: the same text always lands in the same row."""
    return "t-" + hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()[:32]


def create_index_command(router: str, dims: int, dtype: str) -> tuple[Any, ...]:
    return (
        "FT.CREATE", index_name(router), "ON", "HASH", "PREFIX", "1", prefix(router),
        "SCHEMA", EMBEDDING_FIELD, "VECTOR", "HNSW", "10",
        "TYPE", dtype.upper(), "DIM", str(dims), "DISTANCE_METRIC", "COSINE",
        "M", "16", "EF_CONSTRUCTION", "200",
    )  # fmt: skip


def knn_command(router: str, vector: bytes, k: int) -> tuple[Any, ...]:
    """The ``k`` nearest rows, nearest first: distance and packed outcomes of each."""
    # EF_RUNTIME above k keeps HNSW's recall of the k nearest near 1 at a small cost.
    ef = max(2 * k, 64)
    return (
        "FT.SEARCH", index_name(router),
        f"*=>[KNN {int(k)} @{EMBEDDING_FIELD} $vector EF_RUNTIME {ef} AS distance]",
        "PARAMS", "2", "vector", vector,
        "SORTBY", "distance", "RETURN", "2", "distance", "o",
        "LIMIT", "0", str(int(k)), "DIALECT", "2",
    )  # fmt: skip


# --------------------------------------------------------------------------- packing outcomes
def encode_outcomes(values: np.ndarray) -> str:
    """A ``(models, 3)`` float array as the hex string stored in ``o``."""
    return np.asarray(values, dtype="<f4").tobytes().hex()


def decode_outcomes(text: Any) -> np.ndarray:
    """The ``(models, 3)`` float32 array stored in ``o`` (NaN where not observed)."""
    raw = bytes.fromhex(as_text(text)) if text else b""
    return np.frombuffer(raw, dtype="<f4").reshape(-1, FIELDS_PER_MODEL)


@dataclass(frozen=True)
class Observation:
    """One model's outcome on one prompt: quality in [0, 1], and cost (USD) and latency (ms) when known."""

    model: str
    quality: float
    cost: float | None = None
    latency_ms: float | None = None


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def upsert_args(
    router: str,
    row_id: str,
    observations: Sequence[Observation],
    *,
    now_ms: int,
    max_rows: int,
    vector: bytes = b"",
    text: str = "",
    source: str = "learn",
    tokens: int | None = None,
) -> tuple[Any, ...]:
    """``EVALSHA`` arguments (after the script's sha) writing ``observations`` into one row."""
    keys = (row_key(router, row_id), stats_key(router), order_key(router), models_key(router))
    size = "" if tokens is None else str(int(tokens))
    argv: list[Any] = [row_id, str(now_ms), str(max_rows), vector, text, source, prefix(router), size]
    for obs in observations:
        argv += [obs.model, _num(obs.quality), _num(obs.cost), _num(obs.latency_ms)]
    return (len(keys), *keys, *argv)


#: Atomic write of one row's outcomes; returns ``{1 if the row is new else 0, rows evicted}``.
#: KEYS: row, stats, order, models. ARGV: row id, now (ms), max rows, vector ('' for an existing
#: row), text, source, row key prefix, the prompt's tokens ('' if unknown), then (model, quality,
#: cost, latency) per observation with '' for unknown values.
UPSERT_SCRIPT = r"""
local row, stats, order, models = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local rid, now, maxrows = ARGV[1], ARGV[2], tonumber(ARGV[3])
local vec, text, source, prefix, tokens = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local NAN = 0/0
local function isnan(v) return v ~= v end
-- The row keeps float32: the running sums move by the stored values, so a repeat changes nothing.
local function f32(v) if v == nil then return nil end return (struct.unpack('<f', struct.pack('<f', v))) end
local function decode(h)
  local vals = {}
  if h then
    local b = h:gsub('..', function(c) return string.char(tonumber(c, 16)) end)
    for i = 1, #b, 4 do vals[#vals + 1] = struct.unpack('<f', b, i) end
  end
  return vals
end
local function encode(vals)
  local parts = {}
  for i = 1, #vals do parts[i] = struct.pack('<f', vals[i]) end
  return (table.concat(parts):gsub('.', function(c) return string.format('%02x', string.byte(c)) end))
end
local exists = redis.call('EXISTS', row) == 1
if not exists and vec == '' then
  return redis.error_reply('ERR outcome row ' .. rid .. ' does not exist and no vector was given')
end
local vals = decode(redis.call('HGET', row, 'o'))
local names = redis.call('LRANGE', models, 0, -1)
local column = {}
for i, n in ipairs(names) do column[n] = i end
for j = 9, #ARGV, 4 do
  local m, q, c, l = ARGV[j], f32(tonumber(ARGV[j + 1])), f32(tonumber(ARGV[j + 2])), tonumber(ARGV[j + 3])
  local i = column[m]
  if not i then
    names[#names + 1] = m
    i = #names
    column[m] = i
    redis.call('RPUSH', models, m)
  end
  local base = (i - 1) * 3
  for k = #vals + 1, base + 3 do vals[k] = NAN end
  if q then
    local old = vals[base + 1]
    if isnan(old) then redis.call('HINCRBY', stats, 'n:' .. m, 1); old = 0 end
    redis.call('HINCRBYFLOAT', stats, 'q:' .. m, q - old)
    vals[base + 1] = q
  end
  if c then
    local old = vals[base + 2]
    if isnan(old) then redis.call('HINCRBY', stats, 'nc:' .. m, 1); old = 0 end
    redis.call('HINCRBYFLOAT', stats, 'c:' .. m, c - old)
    vals[base + 2] = c
  end
  if l then vals[base + 3] = l end
end
local fields = {'o', encode(vals)}
-- The latest prompt's size: a row is keyed by its routing window, which longer prompts may share.
if tokens ~= '' then fields[3] = 'tokens'; fields[4] = tokens end
if not exists then
  for _, v in ipairs({'embedding', vec, 'created', now, 'source', source, 'id', rid}) do fields[#fields + 1] = v end
  if text ~= '' then fields[#fields + 1] = 'text'; fields[#fields + 1] = text end
  -- A counter, not the clock: rows written in the same millisecond still leave in write order.
  redis.call('ZADD', order, redis.call('HINCRBY', stats, 'seq', 1), rid)
end
redis.call('HSET', row, unpack(fields))
local evicted = 0
local excess = redis.call('ZCARD', order) - maxrows
if excess > 0 then
  local oldest = redis.call('ZPOPMIN', order, excess)
  for k = 1, #oldest, 2 do
    local key = prefix .. oldest[k]
    local ov = decode(redis.call('HGET', key, 'o'))
    for i, n in ipairs(names) do
      local q, c = ov[(i - 1) * 3 + 1], ov[(i - 1) * 3 + 2]
      if q ~= nil and not isnan(q) then
        redis.call('HINCRBY', stats, 'n:' .. n, -1)
        redis.call('HINCRBYFLOAT', stats, 'q:' .. n, -q)
      end
      if c ~= nil and not isnan(c) then
        redis.call('HINCRBY', stats, 'nc:' .. n, -1)
        redis.call('HINCRBYFLOAT', stats, 'c:' .. n, -c)
      end
    end
    redis.call('DEL', key)
    evicted = evicted + 1
  end
end
if exists then return {0, evicted} end
return {1, evicted}
"""


# --------------------------------------------------------------------------- parsing replies
@dataclass(frozen=True)
class Neighbours:
    """The rows a KNN search returned, nearest first: cosine distances and ``(rows, models, 3)`` values."""

    distances: np.ndarray
    values: np.ndarray

    @classmethod
    def empty(cls, models: int = 0) -> Neighbours:
        return cls(np.zeros(0), np.zeros((0, models, FIELDS_PER_MODEL), dtype=np.float32))

    def __len__(self) -> int:
        return int(self.distances.shape[0])


_DISTANCE_KEYS = (b"distance", "distance")
_OUTCOME_KEYS = (b"o", "o")


def parse_neighbours(reply: Any, models: int) -> Neighbours:
    """Rows of a :func:`knn_command` reply, padded to ``models`` columns (NaN where absent).

    On the routing hot path: keys are compared as they come (bytes or str), and the rows' packed
    outcomes are decoded by one ``unhexlify`` and one ``frombuffer`` when they all have full width.
    """
    distances: list[float] = []
    packed: list[Any] = []
    for fields in search_documents(reply):
        distance = outcomes = None
        for i in range(0, len(fields) - 1, 2):
            key = fields[i]
            if key in _DISTANCE_KEYS:
                distance = fields[i + 1]
            elif key in _OUTCOME_KEYS:
                outcomes = fields[i + 1]
        if distance is None or outcomes is None:
            continue  # a row deleted or being written mid-search
        distances.append(float(distance))
        packed.append(outcomes if isinstance(outcomes, bytes) else str(outcomes).encode("ascii"))
    width = models * FIELDS_PER_MODEL * 8  # hex characters of a full row
    values = np.full((len(packed), models, FIELDS_PER_MODEL), np.nan, dtype=np.float32)
    if packed and all(len(p) == width for p in packed):  # the common case: one conversion for all rows
        values[:] = np.frombuffer(binascii.unhexlify(b"".join(packed)), dtype="<f4").reshape(values.shape)
    else:
        for i, p in enumerate(packed):
            row = decode_outcomes(p)[:models]
            values[i, : row.shape[0]] = row
    return Neighbours(np.asarray(distances, dtype=np.float64), values)


def parse_models(reply: Iterable[Any] | None) -> list[str]:
    return [as_text(m) for m in reply or []]


@dataclass(frozen=True)
class MemoryStats:
    """Per-model running sums over the whole memory: observations and summed quality and cost."""

    n: dict[str, int]
    quality_sum: dict[str, float]
    n_cost: dict[str, int]
    cost_sum: dict[str, float]

    def mean_quality(self, model: str) -> float | None:
        n = self.n.get(model, 0)
        return self.quality_sum.get(model, 0.0) / n if n > 0 else None

    def mean_cost(self, model: str) -> float | None:
        n = self.n_cost.get(model, 0)
        return self.cost_sum.get(model, 0.0) / n if n > 0 else None

    @property
    def observations(self) -> int:
        return sum(max(0, v) for v in self.n.values())

    def without(self, columns: Sequence[str], values: np.ndarray) -> MemoryStats:
        """These sums less some rows' outcomes (``(rows, models, 3)`` in ``columns`` order, NaN where not
        observed): the priors of a request left out of the memory it is predicted from (calibration)."""
        n, q, n_cost, c = dict(self.n), dict(self.quality_sum), dict(self.n_cost), dict(self.cost_sum)
        for j, model in enumerate(columns[: values.shape[1]]):
            quality, cost = values[:, j, 0].astype(np.float64), values[:, j, 1].astype(np.float64)
            seen, priced = ~np.isnan(quality), ~np.isnan(cost)
            n[model] = n.get(model, 0) - int(seen.sum())
            q[model] = q.get(model, 0.0) - float(quality[seen].sum())
            n_cost[model] = n_cost.get(model, 0) - int(priced.sum())
            c[model] = c.get(model, 0.0) - float(cost[priced].sum())
        return MemoryStats(n=n, quality_sum=q, n_cost=n_cost, cost_sum=c)


def parse_stats(reply: Any) -> MemoryStats:
    """The stats hash (``HGETALL``; RESP2 flat list or RESP3 dict) as per-model sums."""
    if isinstance(reply, Mapping):
        items = [(as_text(k), v) for k, v in reply.items()]
    else:
        flat = list(reply or [])
        items = [(as_text(flat[i]), flat[i + 1]) for i in range(0, len(flat) - 1, 2)]
    out: dict[str, dict[str, float]] = {"n": {}, "q": {}, "nc": {}, "c": {}}
    for field, value in items:
        kind, sep, model = field.partition(":")
        if sep and kind in out:
            number = float(as_text(value))
            out[kind][model] = number if math.isfinite(number) else 0.0
    return MemoryStats(
        n={m: round(v) for m, v in out["n"].items()},
        quality_sum=out["q"],
        n_cost={m: round(v) for m, v in out["nc"].items()},
        cost_sum=out["c"],
    )
