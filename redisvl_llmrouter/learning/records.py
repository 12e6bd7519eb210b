"""Outcome records: what the router learns from, and the formats it reads them in.

A record is one prompt and what one or more models achieved on it::

    {"id": "mbpp.12", "prompt": "Write a function ...",
     "outcomes": {"openai/gpt-4.1-nano": {"quality": 0.0, "cost": 0.00003},
                  "anthropic/claude-sonnet-4-5": {"quality": 1.0, "cost": 0.0021, "latency_ms": 1800}}}

That is the shared JSONL format of ``../shared/data/routing`` (other keys of a record, such as
``task``, are ignored; an outcome's keys are exactly ``quality``, ``cost`` and ``latency_ms``).
A flat record for a single model is accepted too::

    {"prompt": "...", "model": "openai/gpt-4.1-nano", "quality": 1.0, "cost": 0.00003}

Quality is in [0, 1]; cost is USD for that prompt (at most :data:`MAX_COST_USD`); latency is in
milliseconds (at most :data:`MAX_LATENCY_MS`). Bad values are refused with the file and line (or the
record's position), never averaged in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from redisvl_llmrouter.errors import ConfigError, InvalidFeedbackError
from redisvl_llmrouter.schema import MAX_STATEMENT_CHARS, text_problem

__all__ = [
    "MAX_COST_USD",
    "MAX_LATENCY_MS",
    "ModelOutcome",
    "OutcomeRecord",
    "checked_model_map",
    "parse_record",
    "read_records",
]

#: The most one request's outcome may cost, in USD. No model call costs anywhere near this, so a
#: larger figure is a unit mistake (micro-dollars, tokens) or garbage, refused before it is written:
#: the memory keeps float32 values and running sums, and a figure past float32's range (3.4e38)
#: cannot be stored at all, while one merely huge would swamp every mean it enters.
MAX_COST_USD = 1_000_000.0
#: The longest one request's answer may have taken, in milliseconds (a day), for the same reasons: a
#: latency past float32's range was stored as infinity, and then no export of the memory could be read back.
MAX_LATENCY_MS = 86_400_000.0


def checked_model_map(model_map: Any) -> dict[str, str]:
    """``learn``'s ``model_map``: a mapping of model names in the data to the router's (empty when None)."""
    if model_map is None:
        return {}
    if not isinstance(model_map, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in model_map.items()
    ):
        raise InvalidFeedbackError(
            "model_map must map model names of the data to the router's, e.g. "
            f"{{'gpt-4-1106-preview': 'openai/gpt-4'}}; got {model_map!r}"
        )
    return dict(model_map)


class ModelOutcome(BaseModel):
    """What one model achieved on one prompt.

    Strict, as ``feedback`` is: a misspelt key (``costt``, ``latency``) is refused rather than
    dropped, and numbers must be numbers (``"0.5"`` and ``True`` are refused, not converted).
    """

    quality: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
    cost: Annotated[float, Field(ge=0, le=MAX_COST_USD, allow_inf_nan=False)] | None = None
    latency_ms: Annotated[float, Field(ge=0, le=MAX_LATENCY_MS, allow_inf_nan=False)] | None = None

    model_config = ConfigDict(extra="forbid", strict=True)


class OutcomeRecord(BaseModel):
    """One prompt and the outcome of each model tried on it."""

    prompt: str = Field(min_length=1)
    outcomes: dict[str, ModelOutcome] = Field(min_length=1)
    id: str | None = None

    model_config = ConfigDict(extra="ignore")

    @field_validator("id", mode="before")
    @classmethod
    def _number_id_as_text(cls, ident: Any) -> Any:
        # As eval reads the same files: a numeric id is its text (true and false are not ids).
        return str(ident) if isinstance(ident, int) and not isinstance(ident, bool) else ident

    @field_validator("prompt")
    @classmethod
    def _prompt_has_text(cls, prompt: str) -> str:
        # Refused here, where the error can name the file and line, rather than when it is embedded.
        if not prompt.strip():
            raise ValueError("the prompt is empty or only whitespace")
        if len(prompt) > MAX_STATEMENT_CHARS:
            raise ValueError(f"the prompt is {len(prompt):,} characters; the limit is {MAX_STATEMENT_CHARS:,}")
        problem = text_problem(prompt)
        if problem:
            raise ValueError(f"the prompt {problem}")
        return prompt

    def renamed(self, model_map: Mapping[str, str]) -> OutcomeRecord:
        """The record with its models renamed (``{"dataset name": "catalog name"}``)."""
        model_map = checked_model_map(model_map)
        if not model_map:
            return self
        outcomes: dict[str, ModelOutcome] = {}
        for model, outcome in self.outcomes.items():
            name = model_map.get(model, model)
            if name in outcomes:  # two outcomes for one model: keeping either would drop the other unseen
                sources = sorted(m for m in self.outcomes if model_map.get(m, m) == name)
                raise InvalidFeedbackError(
                    f"model_map maps {sources} to the same model {name!r} in record {self.id or self.prompt[:40]!r}"
                )
            outcomes[name] = outcome
        return self.model_copy(update={"outcomes": outcomes})


def parse_record(data: Any, where: str = "record") -> OutcomeRecord:
    """A record from a mapping in either accepted shape (or an ``OutcomeRecord``)."""
    if isinstance(data, OutcomeRecord):
        return data
    if not isinstance(data, Mapping):
        raise InvalidFeedbackError(f"{where}: an outcome record is a mapping, got {type(data).__name__}")
    data = dict(data)
    flat = sorted(set(data) & {"model", *OUTCOME_KEYS})
    if "outcomes" in data and flat:  # both shapes at once: one of them would be dropped
        raise InvalidFeedbackError(
            f"{where}: {_shown(flat[0])} beside 'outcomes': give either 'outcomes' or one model's 'model', "
            "'quality', ..."
        )
    if "outcomes" not in data and "model" in data:
        # One model's outcome at the top level: a misspelt outcome key (latency for latency_ms) would
        # otherwise pass as one of the record's ignored keys.
        unknown = sorted(set(data) - FLAT_KEYS)
        if unknown:
            raise InvalidFeedbackError(
                f"{where}: unknown key {_shown(unknown[0])}; a one-model record has {', '.join(sorted(FLAT_KEYS))}"
            )
        outcome = {k: data.pop(k) for k in ("quality", "cost", "latency_ms") if k in data}
        model = data.pop("model")
        if not isinstance(model, str):  # a list would fail as a mapping key, not as a record's mistake
            raise InvalidFeedbackError(f"{where}: model must be a model name, got {model!r}"[:300])
        data["outcomes"] = {model: outcome}
    if "prompt" not in data and "text" in data:
        data["prompt"] = data.pop("text")
    try:
        return OutcomeRecord.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors()[:3])
        raise InvalidFeedbackError(f"{where}: {problems}") from None


#: The keys of one model's outcome, named when a record has another.
OUTCOME_KEYS = tuple(ModelOutcome.model_fields)
#: The keys of a one-model record (``{"prompt", "model", "quality", ...}``).
FLAT_KEYS = frozenset({"prompt", "text", "model", "id", "task", *OUTCOME_KEYS})


def _problem(error: Mapping[str, Any]) -> str:
    """One validation error as ``location: what is wrong``, naming the value or the keys allowed."""
    where = ".".join(_shown(p) if isinstance(p, str) and len(p) > 60 else str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key; an outcome has {', '.join(OUTCOME_KEYS)}"
    if error["type"] in ("float_type", "int_type"):
        return f"{where}: must be a number, got {_shown(error['input'])}"
    return f"{where}: {error['msg']}"


def _shown(value: Any, limit: int = 60) -> str:
    """A value as an error names it: its repr, cut short (a 100,000-character string made a 100 KB error)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _read_jsonl(path: Path) -> Iterator[OutcomeRecord]:
    if not path.is_file():
        raise InvalidFeedbackError(f"No outcome file at {path}")
    try:
        # utf-8-sig: a file written with a byte-order mark (as some Windows tools do) reads the same.
        with path.open(encoding="utf-8-sig") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{where}: malformed JSON: {exc.msg}") from None
                yield parse_record(data, where)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc}") from None


def read_records(source: Any) -> Iterator[OutcomeRecord]:
    """Records from a JSONL path, a list of paths, or an iterable of records and mappings."""
    if isinstance(source, (str, Path)):
        yield from _read_jsonl(Path(source))
        return
    if isinstance(source, (Mapping, OutcomeRecord)):
        yield parse_record(source)
        return
    if not isinstance(source, Iterable):
        raise InvalidFeedbackError(f"Cannot read outcome records from {type(source).__name__}")
    for i, item in enumerate(source):
        if isinstance(item, (str, Path)):
            yield from _read_jsonl(Path(item))
        else:
            yield parse_record(item, f"record {i}")
