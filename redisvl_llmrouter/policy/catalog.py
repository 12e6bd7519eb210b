"""The model catalog: what each model can do, what it costs, how good and how fast it is expected to be.

A :class:`ModelSpec` describes one model under its LiteLLM-style name (``provider/model``); a
:class:`ModelCatalog` is the list a router chooses from. The catalog is stored with the router in
Redis (inside ``NAME:route_config``), exported and imported with configs, and can be loaded from a
YAML or JSON file of its own::

    source: "LiteLLM 1.109.1 model_prices_and_context_window.json"
    as_of: "2026-11-23"
    models:
      - name: openai/gpt-4.1-nano
        input_price: 0.10     # USD per 1M input tokens
        output_price: 0.40    # USD per 1M output tokens
        context_window: 1047576
        capabilities: [vision, tools, json, long_context]
        quality: 0.55
        latency_ms: 600

Prices are what a request is charged; ``quality`` is a prior in [0, 1] that the learned memory
replaces where it has evidence. Everything here is data and pure arithmetic: no I/O.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
from collections.abc import Iterable, Iterator
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "NOT_NUMBERS",
    "Capability",
    "ModelCatalog",
    "ModelSpec",
    "estimate_tokens",
    "refuse_non_number",
]

#: Output tokens assumed when a request does not say how long its answer will be (``max_tokens``).
DEFAULT_OUTPUT_TOKENS = 256
#: The most tokens a count may give (a context window, an answer, a prompt): far beyond any model's,
#: and small enough that costs computed from it stay finite and a stored config keeps it exact.
MAX_TOKENS = 1_000_000_000
TokenCount = Annotated[int, Field(gt=0, le=MAX_TOKENS)]
#: The largest whole number a stored setting may be: JSON readers (RedisJSON past 64 bits, JavaScript
#: past 53) no longer keep larger ones exact, and a config read back different from the one written
#: cannot be loaded.
MAX_EXACT_INT = 2**53 - 1


class Capability(str, Enum):
    """What a model can be asked to do beyond plain text in, text out."""

    code = "code"
    vision = "vision"
    tools = "tools"
    json = "json"
    reasoning = "reasoning"
    long_context = "long_context"


def estimate_tokens(text: str) -> int:
    """Tokens in ``text``, estimated as one per 4 bytes of UTF-8 (at least 1).

    A documented estimate rather than a tokenizer: every provider tokenizes differently and the
    real tokenizers are not available offline. Four bytes a token is OpenAI's rule of thumb for
    English; counting bytes rather than characters keeps it from undercounting scripts whose
    characters take several bytes (CJK text tokenizes at roughly one token per character).
    """
    return max(1, math.ceil(len(text.encode("utf-8", errors="surrogatepass")) / 4))


NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]

#: What lax validation would read as a number though nobody wrote one: ``True`` as 1 (numpy's
#: ``np.True_`` too, which even strict float validation takes for 1.0) and ``"0.9"`` as 0.9.
NOT_NUMBERS: tuple[type, ...] = (bool, np.bool_, str, bytes, bytearray)


def finite_number(value: Any) -> bool:
    """Whether ``value`` is a real number (a ``Decimal`` too), not a bool, that a float holds finitely.

    ``math.isfinite(10**400)`` raises OverflowError rather than answering; here it is just not finite.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, Decimal)):
        return False
    try:
        return math.isfinite(value)
    except (OverflowError, ValueError):  # past float's range; a signalling NaN Decimal
        return False


def refuse_non_number(value: Any, field: str) -> Any:
    """``value`` unchanged, unless it is a bool or text: then a ValueError naming ``field`` and the value.

    For ``mode="before"`` validators of numeric settings: numbers of any kind (``int`` for a float,
    numpy's scalars, as Redis and graders return them) go on to the field's own validation.
    """
    if isinstance(value, NOT_NUMBERS):
        raise ValueError(f"{field} must be a number, got {value!r}")
    return value


class ModelSpec(BaseModel):
    """One model the router may choose.

    Prices, quality, latency and sizes are numbers: ``True`` or ``"2"`` is refused, not read as 1 or 2.
    """

    name: str = Field(min_length=1)
    """LiteLLM-style ``provider/model``, e.g. ``"anthropic/claude-sonnet-4-5"``."""
    input_price: NonNegative | None = None
    """USD per 1M input (prompt) tokens; ``None`` when unknown."""
    output_price: NonNegative | None = None
    """USD per 1M output (completion) tokens; ``None`` when unknown."""
    context_window: TokenCount | None = None
    """Most tokens the model accepts (prompt and answer)."""
    capabilities: list[Capability] = Field(default_factory=list)
    quality: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    """Prior expected quality in [0, 1]; the outcome memory refines it per request."""
    latency_ms: Positive | None = None
    """Expected latency of a typical request; live statistics replace it once measured."""
    max_concurrency: Annotated[int, Field(gt=0, le=MAX_EXACT_INT)] | None = None
    """Most requests the gateway sends this model at once."""
    metadata: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid")

    @field_validator("name")
    @classmethod
    def _name_is_clean(cls, v: str) -> str:
        if v != v.strip() or any(c in v for c in "\x00\n\r\t"):
            raise ValueError("Model name must not contain white space at its ends or control characters")
        return v

    @field_validator(
        "input_price", "output_price", "context_window", "quality", "latency_ms", "max_concurrency", mode="before"
    )
    @classmethod
    def _a_number(cls, v: Any, info: ValidationInfo) -> Any:
        return refuse_non_number(v, info.field_name or "value")

    @field_validator("capabilities")
    @classmethod
    def _unique_capabilities(cls, v: list[Capability]) -> list[Capability]:
        return list(dict.fromkeys(v))

    @property
    def priced(self) -> bool:
        """Whether both prices are known, so a request's cost can be estimated."""
        return self.input_price is not None and self.output_price is not None

    def estimate_cost(self, prompt_tokens: int, output_tokens: int = DEFAULT_OUTPUT_TOKENS) -> float | None:
        """USD for a request of ``prompt_tokens`` in and ``output_tokens`` out, or None without prices."""
        if not self.priced:
            return None
        return (prompt_tokens * self.input_price + output_tokens * self.output_price) / 1e6  # type: ignore[operator]

    def has(self, capability: Capability | str) -> bool:
        return Capability(capability) in self.capabilities


class ModelCatalog(BaseModel):
    """The models a router chooses from, with where their prices come from and when they were read."""

    models: list[ModelSpec] = Field(default_factory=list)
    source: str = ""
    """Where the prices and capabilities come from (a URL or a file and its version)."""
    as_of: str | None = None
    """The date the prices were read (ISO 8601)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _unique_names(self) -> ModelCatalog:
        seen: set[str] = set()
        dupes = [m.name for m in self.models if m.name in seen or seen.add(m.name)]  # type: ignore[func-returns-value]
        if dupes:
            raise ValueError(f"Duplicate models in the catalog: {dupes[:3]}")
        return self

    def __iter__(self) -> Iterator[ModelSpec]:  # type: ignore[override]
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    @functools.cached_property
    def by_name(self) -> dict[str, ModelSpec]:
        """Specs by model name (built once: a catalog is not changed in place, it is replaced)."""
        return {m.name: m for m in self.models}

    def get(self, name: str) -> ModelSpec | None:
        return self.by_name.get(name)

    @functools.cached_property
    def offered(self) -> frozenset[Capability]:
        """The capabilities some model in the catalog lists: the ones the catalog says anything about."""
        return frozenset(cap for m in self.models for cap in m.capabilities)

    def with_models(self, specs: Iterable[ModelSpec]) -> ModelCatalog:
        """A copy with ``specs`` added (or replacing the entries of the same name)."""
        new = {s.name: s for s in specs}
        kept = [new.pop(m.name, m) for m in self.models]
        return ModelCatalog(models=[*kept, *new.values()], source=self.source, as_of=self.as_of)

    @classmethod
    def from_file(cls, path: str | Path) -> ModelCatalog:
        """Load a catalog from a YAML or JSON file (``models:`` list, optional ``source`` and ``as_of``)."""
        return cls.parse(read_data_file(path, "catalog"), where=str(path))

    @classmethod
    def parse(cls, data: Any, where: str = "catalog") -> ModelCatalog:
        """Validate a catalog mapping (or a bare list of models), with errors that say where."""
        from redisvl_llmrouter.errors import ConfigError

        if isinstance(data, ModelCatalog):
            return data
        if isinstance(data, list):
            data = {"models": data}
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: a catalog is a mapping with a 'models' list, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()[:5]
            )
            raise ConfigError(f"{where}: {problems}") from None


def load_yaml(text: str) -> Any:
    """YAML as ``yaml.safe_load`` reads it, except that ``1e-3`` is a number (YAML 1.2) rather than the
    string PyYAML's YAML 1.1 makes of an exponent without a dot (prices and costs are written that way),
    and a key given twice in one mapping is an error rather than the last one silently winning."""
    import re

    import yaml

    class _Loader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, str) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} is given twice", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    _Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: no arbitrary objects


def read_data_file(path: str | Path, what: str) -> Any:
    """The parsed contents of a YAML or JSON file (by suffix), with errors that name the file."""
    from redisvl_llmrouter.errors import ConfigError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No {what} file at {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text, object_pairs_hook=_unique_keys)
        return load_yaml(text)
    except Exception as exc:  # JSON and YAML parse errors alike (yaml.YAMLError is not a ValueError)
        raise ConfigError(f"{path} cannot be parsed: {_parse_error(exc)}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when a key is given twice (the last would silently win, as a misspelt
    option would be silently ignored)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} is given twice")
        out[key] = value
    return out


def _parse_error(exc: Exception) -> str:
    """What went wrong and where, without the file's text: the line may hold a secret (an API key)."""
    mark = getattr(exc, "problem_mark", None)
    if mark is None:  # JSON's messages name a position only; other YAML errors carry no excerpt either
        return str(exc) if not hasattr(exc, "problem") else str(getattr(exc, "problem", None) or type(exc).__name__)
    problem = " ".join(str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem or type(exc).__name__}"
