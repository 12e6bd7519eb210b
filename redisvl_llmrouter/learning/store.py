"""The outcome memory of one router, as I/O-free operations (see :mod:`redisvl_llmrouter.ops`).

:class:`OutcomeStore` knows the memory's layout (:mod:`.memory`) and yields the Redis commands
that read, write, export and delete it; the router core combines them with its own (the memory's
KNN search travels in the same round trip as the route search) and the shells perform them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from redis.exceptions import ResponseError

from redisvl_llmrouter import shared_clock
from redisvl_llmrouter.learning import memory
from redisvl_llmrouter.learning.memory import MemoryStats, Neighbours, Observation
from redisvl_llmrouter.ops import Command, Op, Pipeline, run_script
from redisvl_llmrouter.schema import LearningConfig
from redisvl_llmrouter.search import as_text, is_missing_index

__all__ = ["MemoryInfo", "MemoryView", "OutcomeStore", "PendingRow", "RecordedRequest", "WriteReport"]

#: Rows written per pipelined round trip.
WRITE_BATCH = 500


def now_ms() -> int:
    """Rows' ``created`` (the eviction order) on the clock every process shares."""
    return shared_clock.now_ms()


@dataclass(frozen=True)
class PendingRow:
    """One row to write: its id, observations, (for a new row) vector and text, and the prompt's
    estimated tokens (the whole prompt's, not the routing window's: what calibration prices)."""

    row_id: str
    observations: Sequence[Observation]
    vector: bytes = b""
    text: str = ""
    source: str = "learn"
    tokens: int | None = None


@dataclass(frozen=True)
class RecordedRequest:
    """What a routed request left for its feedback: its vector (empty if recorded without one), its
    routing text (empty when ``store_text`` is off), the model that answered (None if not noted), the
    whole prompt's estimated tokens (None for a request recorded without them) and whether the
    gateway answered it from its semantic cache."""

    vector: bytes
    text: str
    model: str | None
    tokens: int | None
    cached: bool = False


def _whole_or_none(value: Any) -> int | None:
    """A stored token count, or None when absent or not a positive whole number (a hand-edited key)."""
    if value is None:
        return None
    try:
        count = int(as_text(value))
    except ValueError:
        return None
    return count if count > 0 else None


@dataclass(frozen=True)
class WriteReport:
    """What a write did: rows created, rows updated (existing rows given new values), rows evicted."""

    created: int = 0
    updated: int = 0
    evicted: int = 0


@dataclass(frozen=True)
class MemoryView:
    """What one routing round trip read from the memory."""

    columns: list[str]
    neighbours: Neighbours
    stats: MemoryStats


@dataclass(frozen=True)
class MemoryInfo:
    """The memory's size and what it knows of each model."""

    rows: int
    models: list[str]
    observations: dict[str, int] = field(default_factory=dict)
    mean_quality: dict[str, float | None] = field(default_factory=dict)
    mean_cost: dict[str, float | None] = field(default_factory=dict)


_unknown_index = is_missing_index


class OutcomeStore:
    """Reads and writes the outcome memory of router ``router`` (vectors of ``dims`` x ``dtype``)."""

    def __init__(self, router: str, dims: int, dtype: np.dtype, config: LearningConfig) -> None:
        self.router = router
        self.dims = dims
        self.dtype = dtype
        self.config = config
        self.columns: list[str] = []
        #: Whether the last read saw rows. While the memory is empty, routing skips the KNN search.
        self.nonempty = False

    # ----------------------------------------------------------------- setup and teardown
    def ensure_index(self, existing_indexes: Iterable[str]) -> Op[None]:
        """Create the memory's index unless it exists (never touches existing rows)."""
        if memory.index_name(self.router) not in set(existing_indexes):
            yield Command(memory.create_index_command(self.router, self.dims, self.dtype.name))

    def _scan_delete(self, pattern: str) -> Op[int]:
        deleted, cursor = 0, "0"
        while True:
            cursor, keys = yield Command(("SCAN", cursor, "MATCH", pattern, "COUNT", "1000"))
            if keys:
                deleted += int((yield Command(("DEL", *keys))))
            cursor = as_text(cursor)
            if cursor == "0":
                return deleted

    def delete(self) -> Op[None]:
        """Drop the index, every row, the running sums and the requests awaiting feedback."""
        try:
            yield Command(("FT.DROPINDEX", memory.index_name(self.router), "DD"))
        except ResponseError as exc:
            if not _unknown_index(exc):
                raise
        yield from self._scan_delete(memory.prefix(self.router) + "*")  # rows the index never saw
        yield Command(
            ("DEL", memory.stats_key(self.router), memory.order_key(self.router), memory.models_key(self.router))
        )
        yield from self._scan_delete(memory.request_key(self.router, "*"))
        self.columns, self.nonempty = [], False

    def clear(self) -> Op[int]:
        """Delete every row and the running sums, keeping an (empty) index; returns the rows deleted.

        Dropping the index with its documents and creating it again is far faster than deleting
        rows one by one from an HNSW graph. Not atomic: rows another process writes meanwhile may
        outlive the sums that count them, so clear a memory nothing else is writing to. A reader
        that finds the index gone meanwhile creates it again, which is no error here.
        """
        rows = int((yield Command(("ZCARD", memory.order_key(self.router)))) or 0)
        try:
            yield Command(("FT.DROPINDEX", memory.index_name(self.router), "DD"))
        except ResponseError as exc:
            if not _unknown_index(exc):
                raise
        yield from self._scan_delete(memory.prefix(self.router) + "*")
        yield Command(
            ("DEL", memory.stats_key(self.router), memory.order_key(self.router), memory.models_key(self.router))
        )
        try:
            yield Command(memory.create_index_command(self.router, self.dims, self.dtype.name))
        except ResponseError as exc:  # a reader that saw the index gone recreated it first: the same index
            if "already exists" not in str(exc).lower():
                raise
        self.columns, self.nonempty = [], False
        return rows

    # ----------------------------------------------------------------- reading while routing
    def read_commands(self, vector: bytes, search: bool, k: int | None = None) -> list[tuple[Any, ...]]:
        """The commands of one routing round trip: the columns, and (``search``) the KNN rows and sums."""
        commands: list[tuple[Any, ...]] = [("LRANGE", memory.models_key(self.router), "0", "-1")]
        if search:
            commands += [
                memory.knn_command(self.router, vector, k or self.config.neighbours),
                ("HGETALL", memory.stats_key(self.router)),
            ]
        return commands

    def parse_read(self, replies: Sequence[Any]) -> MemoryView | None:
        """The view from :meth:`read_commands`' replies; None when the search was not part of it."""
        self.columns = memory.parse_models(replies[0])
        self.nonempty = bool(self.columns)
        if len(replies) < 3 or not self.columns:
            return None
        return MemoryView(
            self.columns, memory.parse_neighbours(replies[1], len(self.columns)), memory.parse_stats(replies[2])
        )

    def read(self, vector: bytes, k: int | None = None) -> Op[MemoryView | None]:
        """One read on its own: calibration, promotion, and a route whose pipelined read found no memory
        although rows have arrived since (see ``RouterCore._route``)."""
        try:
            replies = yield Pipeline(tuple(self.read_commands(vector, True, k)))
        except ResponseError as exc:
            if _unknown_index(exc):
                return None
            raise
        return self.parse_read(replies)

    def read_many(self, vectors: Sequence[bytes], k: int | None = None) -> Op[list[MemoryView | None]]:
        """Views for many vectors in one pipelined round trip (evaluation, calibration)."""
        if not vectors:
            return []
        commands: list[tuple[Any, ...]] = [
            ("LRANGE", memory.models_key(self.router), "0", "-1"),
            ("HGETALL", memory.stats_key(self.router)),
        ]
        commands += [memory.knn_command(self.router, v, k or self.config.neighbours) for v in vectors]
        replies = yield Pipeline(tuple(commands))
        self.columns = memory.parse_models(replies[0])
        self.nonempty = bool(self.columns)
        if not self.columns:
            return [None] * len(vectors)
        stats = memory.parse_stats(replies[1])
        return [MemoryView(self.columns, memory.parse_neighbours(r, len(self.columns)), stats) for r in replies[2:]]

    # ----------------------------------------------------------------- writing
    def write(self, rows: Sequence[PendingRow]) -> Op[WriteReport]:
        """Write rows with the atomic upsert script, :data:`WRITE_BATCH` per round trip."""
        created = updated = evicted = 0
        yield from shared_clock.refresh()  # rows are evicted oldest first, by every process's stamps
        stamp = now_ms()
        for start in range(0, len(rows), WRITE_BATCH):
            batch = rows[start : start + WRITE_BATCH]
            calls = [
                memory.upsert_args(
                    self.router,
                    row.row_id,
                    row.observations,
                    now_ms=stamp,
                    max_rows=self.config.max_rows,
                    vector=row.vector,
                    text=row.text if self.config.store_text else "",
                    source=row.source,
                    tokens=row.tokens,
                )
                for row in batch
            ]
            replies = yield from run_script(memory.UPSERT_SCRIPT, calls)
            for new, gone in replies:
                created += int(new)
                updated += 1 - int(new)
                evicted += int(gone)
        if rows:
            self.nonempty = True
        return WriteReport(created=created, updated=updated, evicted=evicted)

    # ----------------------------------------------------------------- requests awaiting feedback
    def record_request_commands(
        self, request_id: str, vector: bytes, text: str, model: str | None = None, tokens: int | None = None
    ) -> list[tuple[Any, ...]]:
        """Keep a request for feedback by its id: its vector (or none: then its text is embedded if
        feedback comes) and the whole prompt's estimated tokens, which the text kept does not give."""
        key = memory.request_key(self.router, request_id)
        fields: list[Any] = ["embedding", vector, "created", str(now_ms())]
        if model is not None:
            fields += ["model", model]
        if tokens is not None:
            fields += ["tokens", str(int(tokens))]
        if self.config.store_text or not vector:
            fields += ["text", text]
        return [("HSET", key, *fields), ("EXPIRE", key, str(self.config.feedback_ttl_s))]

    def load_request(self, request_id: str) -> Op[RecordedRequest | None]:
        """What was kept of a recorded request, in one read; None if unknown or expired."""
        key = memory.request_key(self.router, request_id)
        vector, text, model, tokens, cached = yield Command(
            ("HMGET", key, "embedding", "text", "model", "tokens", "cached")
        )
        if vector is None:
            return None
        raw = bytes(vector) if not isinstance(vector, str) else vector.encode("latin-1")
        return RecordedRequest(
            vector=raw,
            text=as_text(text or ""),
            model=None if model is None else as_text(model),
            tokens=_whole_or_none(tokens),
            cached=cached is not None,
        )

    def tenant_commands(self, request_id: str, tenant: str) -> list[tuple[Any, ...]]:
        """Note whose request it was (a tenant label, never a key): feedback from another is refused."""
        return [("HSET", memory.request_key(self.router, request_id), "tenant", tenant)] if tenant else []

    def cached_commands(self, request_id: str) -> list[tuple[Any, ...]]:
        """Note that a recorded request was answered from the semantic cache (see :meth:`recorded`)."""
        return [("HSET", memory.request_key(self.router, request_id), "cached", "1")]

    def cache_entry_commands(self, request_id: str, entry_id: str) -> list[tuple[Any, ...]]:
        """Note the semantic cache's entry holding a recorded request's answer (bad feedback removes it)."""
        return [("HSET", memory.request_key(self.router, request_id), "cache_entry", entry_id)]

    def recorded(self, request_id: str) -> Op[dict[str, str]]:
        """What is on record for a request, in one read: its ``tenant``, the ``model`` that answered,
        ``cached`` when the semantic cache did, and ``cache_entry`` when the cache holds its answer;
        only the fields present (none: unknown or expired)."""
        names = ("tenant", "model", "cached", "cache_entry")
        values = yield Command(("HMGET", memory.request_key(self.router, request_id), *names))
        return {name: as_text(v) for name, v in zip(names, values or (), strict=False) if v is not None}

    def sample_rows(self, count: int) -> Op[list[dict[str, Any]]]:
        """Up to ``count`` random rows (vector, text and prompt tokens, None for rows written without
        them), for calibration."""
        ids = yield Command(("ZRANDMEMBER", memory.order_key(self.router), str(int(count))))
        ids = [as_text(i) for i in ids or []]
        if not ids:
            return []
        fields = ("embedding", "text", "tokens")
        replies = yield Pipeline(tuple(("HMGET", memory.row_key(self.router, i), *fields) for i in ids))
        return [
            {
                "id": i,
                "vector": bytes(vector),
                "text": as_text(text) if text is not None else "",
                "tokens": _whole_or_none(tokens),
            }
            for i, (vector, text, tokens) in zip(ids, replies, strict=True)
            if vector is not None
        ]

    # ----------------------------------------------------------------- inspection and export
    def info(self) -> Op[MemoryInfo]:
        rows, columns, stats_reply = yield Pipeline(
            (
                ("ZCARD", memory.order_key(self.router)),
                ("LRANGE", memory.models_key(self.router), "0", "-1"),
                ("HGETALL", memory.stats_key(self.router)),
            )
        )
        models = memory.parse_models(columns)
        stats = memory.parse_stats(stats_reply)
        return MemoryInfo(
            rows=int(rows or 0),
            models=models,
            observations={m: stats.n.get(m, 0) for m in models},
            mean_quality={m: stats.mean_quality(m) for m in models},
            mean_cost={m: stats.mean_cost(m) for m in models},
        )

    def export_rows(self) -> Op[list[dict[str, Any]]]:
        """Every row with its vector (float32 bytes), text, source, prompt tokens and per-model outcomes,
        oldest first."""
        ids = yield Command(("ZRANGE", memory.order_key(self.router), "0", "-1"))
        ids = [as_text(i) for i in ids or []]
        columns = memory.parse_models((yield Command(("LRANGE", memory.models_key(self.router), "0", "-1"))))
        out: list[dict[str, Any]] = []
        fields = ("embedding", "o", "text", "source", "tokens")
        for start in range(0, len(ids), WRITE_BATCH):
            chunk = ids[start : start + WRITE_BATCH]
            replies = yield Pipeline(tuple(("HMGET", memory.row_key(self.router, i), *fields) for i in chunk))
            for row_id, (vector, packed, text, source, tokens) in zip(chunk, replies, strict=True):
                if vector is None or packed is None:
                    continue
                values = memory.decode_outcomes(packed)
                outcomes = {}
                for column, (q, c, lat) in zip(columns, values, strict=False):
                    if np.isnan(q):
                        continue
                    outcomes[column] = {
                        "quality": float(q),
                        "cost": None if np.isnan(c) else float(c),
                        "latency_ms": None if np.isnan(lat) else float(lat),
                    }
                out.append(
                    {
                        "id": row_id,
                        "vector": bytes(vector),
                        "text": as_text(text) if text is not None else "",
                        "source": as_text(source) if source is not None else "learn",
                        "tokens": _whole_or_none(tokens),
                        "outcomes": outcomes,
                    }
                )
        return out
