"""Pretrained router configs: files that carry routes *and* their reference embeddings.

A config file is JSON a person can read and diff::

    {
      "format": "redisvl-llmrouter.pretrained",
      "schema_version": 1,
      "name": "default",
      "description": "...",
      "vectorizer": {"type": "hf", "model": "sentence-transformers/all-MiniLM-L6-v2", "dims": 384, "dtype": "float32"},
      "routing_config": {...},
      "routes": [
        {"name": "simple", "model": "openai/gpt-4.1-nano", "cost": 0.1, "distance_threshold": 0.6,
         "metadata": {...},
         "references": [{"text": "hi there", "vector": "<base64 of the little-endian vector>"}, ...]},
        ...
      ]
    }

Vectors are stored as Redis holds them, in the vectorizer's ``dtype`` (``float32``, ``float16``,
``bfloat16`` or ``float64``), so an export loads back bit for bit.

Loading never re-embeds: the vectors go straight into Redis. Name resolution is strict: a bare
name (``"default"``) means a config shipped in this package and nothing else; anything that looks
like a path (has a separator or a suffix, or is a ``Path``) means that file and nothing else.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from redisvl_llmrouter.errors import (
    ConfigError,
    ConfigFileError,
    ConfigFileNotFoundError,
    VectorizerMismatchError,
)
from redisvl_llmrouter.learning.records import ModelOutcome
from redisvl_llmrouter.policy.catalog import MAX_EXACT_INT, ModelCatalog
from redisvl_llmrouter.schema import Floor, LearningConfig, Route, RouterDefinition, RoutingConfig
from redisvl_llmrouter.search import vector_dtype

__all__ = [
    "CONFIG_DIR",
    "DTYPES",
    "FORMAT",
    "SCHEMA_VERSION",
    "PretrainedConfig",
    "available",
    "resolve",
    "read",
    "build",
    "write",
    "encode_vector",
    "decode_vector",
    "file_path",
]

FORMAT = "redisvl-llmrouter.pretrained"
#: 2 added the model catalog, candidate models and floors on routes, learning settings and outcomes;
#: 3 each outcome row's prompt ``tokens`` (a reader of 2 would refuse the field, not the version).
SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
#: In an installed wheel the configs sit in ``files/`` next to this module (the build maps the
#: repository's top-level ``pretrained/`` folder there); in a checkout they are read from that folder.
_HERE = Path(__file__).parent / "files"
if not _HERE.is_dir():
    _HERE = Path(__file__).resolve().parents[2] / "pretrained"
_BARE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
#: The vector dtypes a router stores (Redis's FLOAT32, FLOAT16, BFLOAT16 and FLOAT64), hence a config holds.
DTYPES = ("float32", "float16", "bfloat16", "float64")


def file_path(value: Any, what: str = "file path") -> Path:
    """``value`` as a ``Path``, or a ``ConfigError`` saying it is neither a string nor a path."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ConfigError(f"The {what} must be a non-empty string or path, got {value!r}")
    return Path(value).expanduser()


class VectorizerIdentity(BaseModel):
    """Which model made the vectors: loading refuses a vectorizer that differs in model, dims or dtype."""

    type: str
    model: str
    dims: int = Field(gt=0)
    dtype: Literal["float32", "float16", "bfloat16", "float64"] = "float32"

    @field_validator("dtype", mode="before")
    @classmethod
    def _lower_case(cls, v: Any) -> Any:
        # RedisVL's vectorizers take FLOAT16 as well as float16, and keep what they were given.
        return v.lower() if isinstance(v, str) else v


class PretrainedReference(BaseModel):
    text: str = Field(min_length=1)
    vector: str
    """Base64 of the little-endian vector in the vectorizer's dtype, as stored in Redis."""


class PretrainedRoute(BaseModel):
    name: str
    model: str | None = None
    models: list[str] = Field(default_factory=list)
    cost: float | None = Field(default=None, ge=0)
    distance_threshold: float = Field(gt=0, le=2)
    metadata: dict[str, Any] = Field(default_factory=dict)
    floor: Floor | None = None
    references: list[PretrainedReference] = Field(min_length=1)

    model_config = ConfigDict(extra="forbid")


class PretrainedOutcome(BaseModel):
    """One row of the outcome memory: the prompt's routing text, its vector and each model's outcome."""

    id: str
    text: str = ""
    vector: str
    source: str = "learn"
    tokens: Annotated[int, Field(ge=1, le=MAX_EXACT_INT, strict=True)] | None = None
    """The whole prompt's estimated tokens (the text is only its routing window); None in older files."""
    outcomes: dict[str, ModelOutcome] = Field(min_length=1)

    model_config = ConfigDict(extra="forbid")


class PretrainedConfig(BaseModel):
    """A router with its embeddings, as written by ``export_with_embeddings``."""

    format: Literal["redisvl-llmrouter.pretrained"] = FORMAT
    schema_version: int = SCHEMA_VERSION
    name: str
    description: str = ""
    vectorizer: VectorizerIdentity
    routing_config: RoutingConfig = Field(default_factory=RoutingConfig)
    routes: list[PretrainedRoute]
    catalog: ModelCatalog = Field(default_factory=ModelCatalog)
    learning: LearningConfig = Field(default_factory=LearningConfig)
    outcomes: list[PretrainedOutcome] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    """What was measured when the config was built (e.g. held-out tier accuracy); informational."""

    model_config = ConfigDict(extra="forbid")

    def definition(self, name: str | None = None) -> RouterDefinition:
        """The router definition (routes without vectors) under ``name`` (default: the config's)."""
        try:
            routes = [
                Route(
                    name=r.name,
                    model=r.model,
                    models=r.models,
                    cost=r.cost,
                    distance_threshold=r.distance_threshold,
                    metadata=r.metadata,
                    floor=r.floor,
                    references=[ref.text for ref in r.references],
                )
                for r in self.routes
            ]
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3])
            raise ConfigError(f"Config {self.name!r} has an invalid route: {problems}") from None
        return RouterDefinition(
            name=name or self.name,
            routes=routes,
            vectorizer=self.vectorizer.model_dump(),
            routing_config=self.routing_config,
            catalog=self.catalog,
            learning=self.learning,
        )

    def outcome_rows(self) -> list[dict[str, Any]]:
        """The outcome memory's rows with their vectors as stored bytes, checked against the dimensions."""
        rows = []
        dtype, dims = self.vectorizer.dtype, self.vectorizer.dims
        for row in self.outcomes:
            raw = _checked_vector(decode_vector(row.vector, dtype), dims, f"Outcome row {row.id!r}", dtype)
            rows.append(
                {
                    "id": row.id,
                    "text": row.text,
                    "vector": raw,
                    "source": row.source,
                    "tokens": row.tokens,
                    "outcomes": {m: o.model_dump() for m, o in row.outcomes.items()},
                }
            )
        return rows

    def vectors(self) -> dict[tuple[str, str], bytes]:
        """(route, reference) → stored vector bytes, checked against the declared dimensions."""
        out = {}
        dtype, dims = self.vectorizer.dtype, self.vectorizer.dims
        for route in self.routes:
            for ref in route.references:
                what = f"Reference {ref.text!r} of route {route.name!r}"
                out[(route.name, ref.text)] = _checked_vector(decode_vector(ref.vector, dtype), dims, what, dtype)
        return out


def encode_vector(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _numpy_dtype(dtype: str) -> np.dtype:
    """The numpy dtype of stored vectors, little-endian as Redis holds them."""
    return vector_dtype(dtype).newbyteorder("<")


def decode_vector(text: str, dtype: str = "float32") -> bytes:
    """The bytes of a base64 vector of ``dtype`` values, checked to be whole finite values."""
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise ConfigError(f"A reference vector is not valid base64: {exc}") from None
    numpy_dtype = _numpy_dtype(dtype)
    if len(raw) % numpy_dtype.itemsize:
        raise ConfigError(f"A reference vector's length is not a whole number of {dtype} values.")
    if not np.all(np.isfinite(np.frombuffer(raw, dtype=numpy_dtype).astype(np.float64))):
        raise ConfigError("A reference vector contains NaN or infinite values.")
    return raw


def _checked_vector(raw: bytes, dims: int, what: str, dtype: str = "float32") -> bytes:
    """A decoded vector of the declared dimensions that can match something (not all zeros)."""
    numpy_dtype = _numpy_dtype(dtype)
    if len(raw) != numpy_dtype.itemsize * dims:
        raise VectorizerMismatchError(
            f"{what} has a {len(raw) // numpy_dtype.itemsize}-dimensional vector, but the config declares "
            f"{dims} dimensions."
        )
    if not np.any(np.frombuffer(raw, dtype=numpy_dtype).astype(np.float64)):
        raise ConfigError(
            f"{what} has an all-zero vector: cosine distance is undefined for it, so it could never match."
        )
    return raw


CONFIG_DIR = _HERE
"""Where the shipped configs (and their sources and labelled queries) are read from."""


def available() -> list[str]:
    """Names of the configs shipped with the package."""
    return sorted(p.stem for p in _HERE.glob("*.json"))


def is_bare_name(name_or_path: str | Path) -> bool:
    return isinstance(name_or_path, str) and bool(_BARE_NAME.match(name_or_path))


def resolve(name_or_path: str | Path) -> Path:
    """The file for a shipped config name, or the given path; never one for the other."""
    path = file_path(name_or_path, "config name or path")
    if is_bare_name(name_or_path):
        path = _HERE / f"{name_or_path}.json"
        if not path.is_file() and Path(name_or_path).is_dir():  # meant as a path, as ./adir would be
            raise ConfigFileError(
                f"{name_or_path} is a directory (and no shipped config has that name; available: "
                f"{', '.join(available())}); pass the path of a config file in it."
            )
        if not path.is_file():
            raise ConfigError(
                f"No pretrained config named {name_or_path!r}; available: {', '.join(available())}. "
                "To load a file, pass its path (e.g. './my_router.json')."
            )
        return path
    if path.is_dir():
        raise ConfigFileError(f"{path} is a directory; pass the path of a config file in it.")
    if not path.is_file():
        raise ConfigFileNotFoundError(f"No pretrained config file at {path}")
    return path


def read(name_or_path: str | Path) -> PretrainedConfig:
    """Load and validate a config file, with errors that say what is wrong and where."""
    path = resolve(name_or_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:  # no permission, or a path that changed under us
        raise ConfigFileError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        hint = ""
        if path.suffix.lower() in (".yaml", ".yml"):
            hint = (
                " (a config here is the JSON with embeddings that `llmrouter export` or export_with_embeddings()"
                " writes; load a to_yaml() file with SemanticRouter.from_yaml)"
            )
        raise ConfigError(f"{path} is not a JSON file: {exc}{hint}") from None
    return parse(data, where=str(path))


def parse(data: Any, where: str = "config") -> PretrainedConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a JSON object at the top level.")
    if data.get("format") != FORMAT:
        raise ConfigError(f"{where}: not a redisvl-llmrouter pretrained config (format {data.get('format')!r}).")
    if data.get("schema_version") not in READABLE_VERSIONS:
        raise ConfigError(
            f"{where}: schema_version {data.get('schema_version')!r} is not supported (this version reads "
            f"{SCHEMA_VERSION}); upgrade redisvl-llmrouter."
        )
    try:
        return PretrainedConfig.model_validate({**data, "schema_version": SCHEMA_VERSION})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise ConfigError(f"{where}: {problems}") from None


def build(
    definition: Mapping[str, Any],
    vectors: Mapping[tuple[str, str], bytes],
    description: str = "",
    outcomes: Iterable[Mapping[str, Any]] = (),
    metrics: Mapping[str, Any] | None = None,
) -> PretrainedConfig:
    """A config from a router's ``to_dict()``, its stored vectors and (optionally) its outcome rows."""
    vectorizer = dict(definition["vectorizer"])
    routes = [
        PretrainedRoute(
            name=r["name"],
            model=r.get("model"),
            models=r.get("models") or [],
            cost=r.get("cost"),
            distance_threshold=r["distance_threshold"],
            metadata=r.get("metadata") or {},
            floor=r.get("floor"),
            references=[
                PretrainedReference(text=ref, vector=encode_vector(vectors[(r["name"], ref)]))
                for ref in r["references"]
            ],
        )
        for r in definition["routes"]
    ]
    try:
        identity = VectorizerIdentity.model_validate(vectorizer)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3])
        raise ConfigError(f"Router {definition['name']!r} cannot be exported with its vectorizer: {problems}") from None
    return PretrainedConfig(
        # The oldest version that holds it all: a file without row sizes stays readable by older versions.
        schema_version=SCHEMA_VERSION if any(row.get("tokens") for row in outcomes) else 2,
        name=definition["name"],
        description=description,
        vectorizer=identity,
        routing_config=RoutingConfig.model_validate(definition["routing_config"]),
        routes=routes,
        catalog=ModelCatalog.model_validate(definition.get("catalog") or {}),
        learning=LearningConfig.model_validate(definition.get("learning") or {}),
        outcomes=[
            PretrainedOutcome(
                id=row["id"],
                text=row.get("text") or "",
                vector=encode_vector(row["vector"]),
                source=row.get("source") or "learn",
                tokens=row.get("tokens"),
                outcomes=row["outcomes"],
            )
            for row in outcomes
        ],
        metrics=dict(metrics or {}),
    )


def write(config: PretrainedConfig, path: str | Path) -> Path:
    """Write a config as indented JSON (one reference per object, diff-friendly)."""
    path = file_path(path, "export path")
    if path.is_dir():
        raise ConfigFileError(f"{path} is a directory; pass the path of a file to write.")
    text = json.dumps(config.model_dump(mode="json"), indent=1, ensure_ascii=False) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:  # a directory, no permission, a full disk
        raise ConfigFileError(f"Cannot write {path}: {exc.strerror or exc}") from exc
    return path
