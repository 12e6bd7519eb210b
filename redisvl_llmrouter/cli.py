"""The ``llmrouter`` command: parse arguments, call the library, print.

    llmrouter route "explain garbage collection"            # tier, model, confidence, alternatives, saving
    llmrouter route "hi" "prove Fermat's little theorem"    # several queries, one batch
    llmrouter route "hi" --config ./my_router.json --json
    llmrouter route "hi" --router support-bot --redis-url redis://...
    llmrouter info [--config default|PATH]
    llmrouter export default ./my_router.json               # a shipped config or file, through Redis
    llmrouter export my-router ./my_router.json --from-redis
    llmrouter eval DATASET.jsonl ... --router default --map simple=gpt-4 --json out.json --plot out.png
    llmrouter eval TEST.jsonl --learn TRAIN.jsonl ...        # the learned router, trained on TRAIN
    llmrouter eval DATASET.jsonl --cv 5 --strategy learned --strategy cost
    llmrouter learn DATASET.jsonl ... --router default --name my-router --add-models   # a new router, learned
    llmrouter learn DATASET.jsonl ... --router my-router    # add to a stored router's outcome memory
    llmrouter serve --upstream http://127.0.0.1:8001/v1      # the OpenAI-compatible gateway
    llmrouter report --since 1h --plot traffic.png           # what the gateway spent, saved and answered

Redis is resolved as in the library: ``--redis-url``, else ``REDIS_URL``, else the embedded server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from redisvl_llmrouter.errors import ConfigError, LLMRouterError, redact

__all__ = ["COMMANDS", "add_command", "build_parser", "main", "parse_args", "price", "saving"]


def _baseline(catalog: Any) -> Any:
    """The dearest priced model of the router's catalog (by output, then input price): the "always use the
    most expensive model" baseline, the same one the gateway's reports measure savings against."""
    priced = [m for m in catalog if m.priced]
    return max(priced, key=lambda m: (m.output_price, m.input_price)) if priced else None


def saving(match: Any, catalog: Any, output_tokens: int, baseline_catalog: Any = None) -> dict[str, Any] | None:
    """The estimated saving of this request on the chosen model against the same request on the dearest
    priced model of ``baseline_catalog`` (default ``catalog``; ``_baseline``), both priced with the catalog
    for the decision's prompt tokens and ``output_tokens`` answer tokens (unless the request set its own).
    None when the chosen model or the baseline catalog has no price.

    ``{"fraction", "cost_usd", "against_model", "against_cost_usd"}``; ``fraction`` is
    ``1 - cost_usd / against_cost_usd`` (0 when the chosen model is the baseline).
    """
    decision = getattr(match, "decision", None)
    if decision is None or decision.model is None or decision.estimated_cost is None:
        return None
    if price(decision.model, catalog) is None:  # the estimate came from learned costs, not a price
        return None
    dearest = _baseline(catalog if baseline_catalog is None else baseline_catalog)
    if dearest is None:
        return None
    against = dearest.estimate_cost(decision.prompt_tokens, decision.constraints.output_tokens or output_tokens)
    cost = decision.estimated_cost  # the policy's estimate for the chosen model: same tokens, same catalog
    fraction = 0.0 if against <= 0 else 1.0 - cost / against
    return {"fraction": fraction, "cost_usd": cost, "against_model": dearest.name, "against_cost_usd": against}


def price(model: str | None, catalog: Any) -> dict[str, float] | None:
    """The chosen model's catalog price, USD per 1M input and output tokens (None when not priced)."""
    spec = catalog.get(model) if model is not None else None
    if spec is None or not spec.priced:
        return None
    return {"input_per_1m": spec.input_price, "output_per_1m": spec.output_price}


def _price(prices: dict[str, float] | None) -> str:
    if prices is None:
        return "price unknown"
    return f"${prices['input_per_1m']:g} in / ${prices['output_per_1m']:g} out per 1M tokens"


def _load(args: argparse.Namespace) -> Any:
    from redisvl_llmrouter import SemanticRouter
    from redisvl_llmrouter.errors import RouterExistsError, VectorizerMismatchError

    if getattr(args, "router", None):  # a router stored in Redis (as `learn --router` or the gateway left it)
        return SemanticRouter.from_existing(args.router, redis_url=args.redis_url)
    try:
        return SemanticRouter.from_pretrained(args.config, redis_url=args.redis_url)
    except (RouterExistsError, VectorizerMismatchError) as exc:
        raise _name_taken(exc, args.config) from None


#: The library's advice when a router name is taken: options of the Python API, not of the CLI.
_PYTHON_HINT = "Pass overwrite=True to replace it, or use from_existing() to attach to it."


def _name_taken(exc: Exception, config: str) -> Exception:
    """``exc`` (another router under the config's name in this Redis) with what a CLI user can do about it."""
    from redisvl_llmrouter import pretrained

    if _PYTHON_HINT not in str(exc):
        return exc
    name = pretrained.read(config).name
    problem = str(exc).replace(_PYTHON_HINT, "").strip()
    return type(exc)(
        f"{problem} route loads the config {config!r} under its name: to route with the router stored in Redis, "
        f"pass --router {name}; to route with the config as shipped, use another Redis (--redis-url)."
    )


def _confidence_line(match: Any, calibrated: bool) -> str:
    """The confidence and, in the same line, what the number means for this config."""
    distance = "" if match.distance is None else f"; distance {match.distance:.3f}"
    if calibrated:
        which = "the default route" if match.fallback else "this tier"
        return f"{match.confidence:.2f}  chance that {which} is right (calibrated on labelled queries{distance})"
    return f"{match.confidence:.2f}  1 - distance/threshold, not a probability (config not calibrated{distance})"


def _route_lines(
    text: str, match: Any, economy: dict[str, Any] | None, prices: dict[str, float] | None, calibrated: bool = False
) -> list[tuple[str, str]]:
    if not match:
        return [("query", text), ("tier", "no route matched and the config has no default route")]
    rows = [
        ("query", text),
        ("tier", f"{match.name}{'  (default route: nothing matched)' if match.fallback else ''}"),
        ("model", f"{match.model}  ({_price(prices)})" if match.model else "none (the route names no model)"),
        ("confidence", _confidence_line(match, calibrated)),
        (
            "alternatives",
            ", ".join(f"{a.name} ({a.model}, distance {a.distance:.3f})" for a in match.alternatives) or "none",
        ),
    ]
    if economy is not None:
        rows.append(
            (
                "saving",
                f"{economy['fraction']:.1%} vs {economy['against_model']} "
                f"(${economy['against_cost_usd']:.6f} for this request)",
            )
        )
    return rows + _decision_lines(match)


def _decision_lines(match: Any) -> list[tuple[str, str]]:
    decision = match.decision
    if decision is None or decision.model is None:
        return []
    note = ""
    if decision.strategy.value == "learned":
        note = "  (from similar past outcomes)" if decision.learned else "  (no similar outcomes yet: the tier decides)"
    rows = [("strategy", decision.strategy.value + note)]
    if decision.estimated_cost is not None:
        rows.append(("est. cost", f"${decision.estimated_cost:.6f} for this request"))
    if decision.floors:
        rows.append(("floor", ", ".join(decision.floors) + " (held at the floor's tier or above)"))
    if decision.constraints.active:
        rows.append(("constraints", ", ".join(f"{k}={v}" for k, v in decision.constraints.active.items())))
    if decision.relaxed:
        rows.append(("relaxed", ", ".join(decision.relaxed)))
    rows.append(("fallbacks", ", ".join(decision.fallbacks) or "none"))
    for excluded in decision.excluded:
        rows.append(("excluded", f"{excluded.model}: {excluded.reason}"))
    return rows


def _route_options(args: argparse.Namespace) -> dict[str, Any]:
    constraints: dict[str, Any] = {}
    for field in ("max_cost", "max_latency_ms", "min_quality"):
        if getattr(args, field) is not None:
            constraints[field] = getattr(args, field)
    if args.capability:
        constraints["capabilities"] = list(dict.fromkeys(args.capability))  # --capability code twice is code
    if args.best_effort:
        constraints["best_effort"] = True
    return {"strategy": args.strategy, "constraints": constraints}


def cmd_route(args: argparse.Namespace) -> int:
    router = _load(args)
    options = _route_options(args)
    matches = router.route_batch(args.text, **options) if len(args.text) > 1 else [router(args.text[0], **options)]
    # The catalog the policy priced the candidates with (route models it lacks priced at their route's cost).
    catalog = router._core.effective_catalog()
    output_tokens = router.routing_config.expected_output_tokens
    results = []
    for text, match in zip(args.text, matches, strict=True):
        # Against the router's own catalog, as the gateway measures: a model priced only by its route's cost
        # is never the baseline.
        economy = saving(match, catalog, output_tokens, router.catalog) if match else None
        results.append((text, match, economy, price(match.model, catalog) if match else None))
    if args.json:
        out = [
            {"query": text, **match.model_dump(), "price": prices, "saving": economy}
            for text, match, economy, prices in results
        ]
        print(json.dumps(out[0] if len(out) == 1 else out, indent=2, ensure_ascii=False))
    else:
        from redisvl_llmrouter.observability.report import escape_controls

        for i, (text, match, economy, prices) in enumerate(results):
            rows = _route_lines(text, match, economy, prices, router.routing_config.confidence is not None)
            width = max(len(k) for k, _ in rows)
            # One line per row whatever the query (or a config's names) holds: escaped as `report` escapes names.
            lines = (f"{key:<{width}}  {escape_controls(value)}" for key, value in rows)
            print(("\n" if i else "") + "\n".join(lines))
    return 0 if all(r[1] for r in results) else 1


def cmd_info(args: argparse.Namespace) -> int:
    from redisvl_llmrouter import pretrained

    config = pretrained.read(args.config)
    if args.json:
        data = config.model_dump(mode="json")
        for route in data["routes"]:
            route["references"] = [ref["text"] for ref in route["references"]]
        for row in data.get("outcomes") or []:  # a learned config's memory rows: their prompts, not vectors
            row.pop("vector", None)
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return 0
    print(f"{config.name}: {config.description}")
    v = config.vectorizer
    from redisvl_llmrouter.vectorizers import is_default_model

    # The config names the model as RedisVL does ("hf ..."); this package runs its own packaged copy.
    where = "; the packaged copy, offline" if is_default_model(v.model) else ""
    print(f"vectorizer   {v.type} {v.model} ({v.dims} dims, {v.dtype}{where})")
    rc = config.routing_config
    print(
        f"routing      aggregation={rc.aggregation_method.value} cost_optimization={rc.cost_optimization} "
        f"cost_weight={rc.cost_weight} default_route={rc.default_route}"
    )
    print(f"{'route':<12} {'model':<30} {'cost':>8} {'threshold':>9} {'refs':>5}")
    for r in config.routes:
        cost = "-" if r.cost is None else f"{r.cost:g}"
        print(f"{r.name:<12} {r.model or '-':<30} {cost:>8} {r.distance_threshold:>9.2f} {len(r.references):>5}")
    if config.metrics:
        print("metrics      " + json.dumps(config.metrics))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import uuid

    from redisvl_llmrouter import SemanticRouter, pretrained
    from redisvl_llmrouter.errors import ConfigError

    if args.from_redis:
        if not _configured_redis(args):
            raise ConfigError(
                f"--from-redis reads a router stored in Redis, but no Redis is configured: this command would "
                f"start a new, empty embedded Redis with no {args.name!r} in it. Pass --redis-url or set "
                "REDIS_URL (or LLMROUTER_DATA_DIR, for the embedded Redis that stored it)."
            )
        router = SemanticRouter.from_existing(args.name, redis_url=args.redis_url)
        description, metrics = _measured_config(router, pretrained.available())
        path = router.export_with_embeddings(args.path, description=description, metrics=metrics)
        refs = sum(len(r.references) for r in router.routes)
        print(f"wrote {path}: {len(router.routes)} routes, {refs} references with their vectors")
        return 0
    config = pretrained.read(args.name)  # the file's description and metrics travel with the export
    # Through Redis under a name of its own: a router already stored under the config's name (changed, or
    # with learned rows) is neither refused nor exported in the config's place; the file holds the config.
    router = SemanticRouter.from_pretrained(
        args.name, name=f"{config.name}.export-{uuid.uuid4().hex[:8]}", redis_url=args.redis_url
    )
    try:
        written = router.export_with_embeddings(args.path, description=config.description, metrics=config.metrics)
        path = pretrained.write(pretrained.read(written).model_copy(update={"name": config.name}), written)
        refs = sum(len(r.references) for r in router.routes)
        print(f"wrote {path}: {len(router.routes)} routes, {refs} references with their vectors")
    finally:
        router.delete()
    return 0


def _measured_config(router: Any, configs: Sequence[str]) -> tuple[str, dict[str, Any] | None]:
    """The description and measured metrics of the first config (name or file) the router was loaded from.

    The description when the router has the config's vectorizer and routes (by name); the metrics only
    when it also routes exactly as measured (same references, thresholds, models and routing config):
    a changed threshold voids them. A learned memory or a grown catalog changes neither. ``("", None)``
    when no config matches.
    """
    from redisvl_llmrouter import pretrained

    ours = router.to_dict()
    for source in dict.fromkeys(configs):
        try:
            config = pretrained.read(source)
        except (LLMRouterError, OSError):
            continue
        theirs = config.definition(router.name)
        same_vectors = {k: ours["vectorizer"].get(k) for k in ("model", "dims")} == {
            k: theirs.vectorizer.get(k) for k in ("model", "dims")
        }
        if not same_vectors or [r.name for r in router.routes] != [r.name for r in theirs.routes]:
            continue
        measured = router.routes == theirs.routes and router.routing_config == theirs.routing_config
        return config.description, config.metrics if measured else None
    return "", None


def _configured_redis(args: argparse.Namespace) -> bool:
    """Whether the command's Redis outlives it: a given URL, ``REDIS_URL``, or an embedded one with a data dir."""
    return bool(args.redis_url or os.environ.get("REDIS_URL") or os.environ.get("LLMROUTER_DATA_DIR"))


def cmd_learn(args: argparse.Namespace) -> int:
    from redisvl_llmrouter import SemanticRouter, pretrained
    from redisvl_llmrouter.errors import RouterExistsError, RouterNotFoundError
    from redisvl_llmrouter.learning.records import read_records

    records = list(read_records(args.datasets))
    if not records:  # as eval says: an empty file is more likely a mistake than an intention
        raise ConfigError(f"{', '.join(args.datasets)}: no outcome rows to learn")
    model_map = dict(_pairs(args.map, "--map", "DATA_MODEL=MODEL"))
    # Before any router is made (or any catalog changed): what learning would refuse halfway through.
    _check_data_models(model_map, {m for r in records for m in r.outcomes})
    _check_map_collisions(model_map, records)
    try:  # a router already in Redis ...
        router = SemanticRouter.from_existing(args.name or args.router, redis_url=args.redis_url)
        origin = "attached to"
    except ConfigError as exc:  # ... else a shipped config or a config file, loaded into Redis
        # Only when none is stored (a path is no router name): a router that is there but cannot be read
        # now is not one to create, nor to delete when learning fails.
        if not isinstance(exc, RouterNotFoundError) and _router_name(args.name or args.router):
            raise
        if (
            args.name is None
            and pretrained.is_bare_name(args.router)
            and args.router not in pretrained.available()
            and not Path(args.router).is_dir()  # a directory: from_pretrained says so
        ):
            if not _configured_redis(args):  # the likeliest cause: an earlier command's Redis is gone
                raise ConfigError(
                    f"No router {args.router!r} and no shipped config of that name (available: "
                    f"{', '.join(pretrained.available())}). No Redis is configured, so this command started a new, "
                    "empty embedded Redis: if an earlier command created the router, its Redis stopped with it. Set "
                    "LLMROUTER_DATA_DIR (the embedded Redis then keeps its data there) or REDIS_URL for every "
                    "command; to create the router, give the config to start from: "
                    f"--router default --name {args.router}"
                ) from None
            raise ConfigError(
                f"No router {args.router!r} in this Redis and no shipped config of that name (available: "
                f"{', '.join(pretrained.available())}). To create a new router, give the config to start from with "
                f"--router and the new router's name with --name: --router default --name {args.router}"
            ) from None
        try:
            router = SemanticRouter.from_pretrained(args.router, name=args.name, redis_url=args.redis_url)
            # Found stored after all (another learn created it a moment ago): never this command's to delete.
            origin = "created" if router._core.created else "attached to"
        except RouterExistsError:  # another learn created it meanwhile (and changed it): attach, as run after it
            name = args.name or pretrained.read(args.router).name  # --router may be a config file's path
            router = SemanticRouter.from_existing(name, redis_url=args.redis_url)
            origin = "attached to"
    try:
        _learn_into(router, origin, records, model_map, args)
    except BaseException:  # failed or interrupted: leave no half-made router behind, never one that was there
        if origin == "created":
            with contextlib.suppress(Exception):
                router.delete()
        raise
    return 0


def _router_name(name: str) -> bool:
    """Whether ``name`` can name a stored router (a config file's path, say, cannot)."""
    from redisvl_llmrouter.search import validate_router_name

    try:
        validate_router_name(name)
    except ConfigError:
        return False
    return True


def _learn_into(
    router: Any, origin: str, records: Sequence[Any], model_map: dict[str, str], args: argparse.Namespace
) -> None:
    """``learn``'s work on a router it attached to or created: the catalog, the memory, the export."""
    from tqdm import tqdm

    from redisvl_llmrouter import pretrained
    from redisvl_llmrouter.errors import UnknownModelError

    if args.add_models:  # merged with what another learn adds meanwhile
        seen = {model_map.get(m, m) for r in records for m in r.outcomes}
        new = sorted(seen - set(router.models))
        if new:
            router.add_models(new)
    unknown = sorted({model_map.get(m, m) for r in records for m in r.outcomes} - set(router.models))
    if unknown:  # nothing will be learned (a router this command created is deleted by the caller)
        raise UnknownModelError(
            f"Router {router.name!r} does not know the model(s) {unknown[:5]}"
            f"{f' and {len(unknown) - 5} more' if len(unknown) > 5 else ''}. Name each dataset model's catalog "
            "model with --map DATA_MODEL=MODEL, or add them to the catalog with --add-models."
        )
    with tqdm(total=len(records), desc="learning", unit="prompt", file=sys.stderr) as bar:
        report = router.learn(records, model_map=model_map, progress=bar.update)
    info = router.memory_info()
    print(
        f"{origin} router {router.name!r}: {report.created} new rows, {report.updated} updated, "
        f"{report.evicted} evicted; memory now {info.rows} rows"
    )
    for model in info.models:
        mean = info.mean_quality.get(model)
        quality = "-" if mean is None else f"{mean:.3f}"  # None: every outcome of the model was evicted
        print(f"  {model:<45} {info.observations.get(model, 0):>7} outcomes  mean quality {quality}")
    if args.export:  # with the description and metrics of the config it routes as (see _measured_config)
        description, metrics = _measured_config(router, [args.router, *pretrained.available()])
        path = router.export_with_embeddings(args.export, description=description, metrics=metrics)
        print(f"wrote {path} (routes, catalog and {info.rows} learned rows)")
    elif not _configured_redis(args):
        print(
            "note: this used a temporary embedded Redis; set REDIS_URL or LLMROUTER_DATA_DIR to keep the memory, "
            "or pass --export PATH to save it",
            file=sys.stderr,
        )


def _check_map_collisions(model_map: dict[str, str], records: Sequence[Any]) -> None:
    """Refuse a ``--map`` that gives two models of one prompt the same name (``A=X`` and ``B=X``, or ``A=B``
    where the data has ``B`` too): a prompt keeps one outcome per model, so learning would stop at that
    prompt. Checked before any router is made, naming the models and the prompt."""
    if not model_map:
        return
    for record in records:
        named: dict[str, list[str]] = {}
        for model in record.outcomes:
            named.setdefault(model_map.get(model, model), []).append(model)
        for name, sources in named.items():
            if len(sources) > 1:
                raise LLMRouterError(
                    f"--map gives {sorted(sources)} the same name {name!r}, and record "
                    f"{record.id or record.prompt[:40]!r} has an outcome of each: a prompt keeps one outcome per "
                    "model, so map each data model to a different model"
                )


def _check_data_models(model_map: dict[str, str], data_models: set[str]) -> None:
    """Refuse a ``--map DATA_MODEL=MODEL`` whose DATA_MODEL names no model of the data (a typo would
    otherwise rename nothing, silently), naming it and the data's models, as ``eval`` refuses its own."""
    for key, value in model_map.items():
        if key not in data_models:
            models = sorted(data_models)
            shown = f"{models[:10]}{f' and {len(models) - 10} more' if len(models) > 10 else ''}"
            raise LLMRouterError(f"--map {key}={value}: {key!r} is not a model of the data; it has {shown}")


def _pairs(items: Sequence[str], option: str, shape: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise LLMRouterError(f"{option} {item!r}: expected {shape}")
        out.append((key, value))
    keys = [k for k, _ in out]
    if len(keys) != len(set(keys)):
        raise LLMRouterError(f"{option} names {sorted({k for k in keys if keys.count(k) > 1})} more than once")
    return out


def cmd_serve(args: argparse.Namespace) -> int:
    from redisvl_llmrouter.gateway.serve import serve

    return serve(args)


def cmd_upstream(args: argparse.Namespace) -> int:
    from redisvl_llmrouter.gateway.upstream import main as upstream_main

    key = ["--api-key", args.api_key] if args.api_key is not None else []
    return upstream_main(["--host", args.host, "--port", str(args.port), *key])


def cmd_report(args: argparse.Namespace) -> int:
    from redisvl_llmrouter import shared_clock
    from redisvl_llmrouter.connection import sync_client
    from redisvl_llmrouter.errors import ConfigError, RedisUnavailableError
    from redisvl_llmrouter.observability import report
    from redisvl_llmrouter.observability.decisions import stream_key
    from redisvl_llmrouter.router import drive
    from redisvl_llmrouter.stored_definition import load_definition

    try:
        since_ms = report.parse_since(args.since)
    except ValueError as exc:
        raise LLMRouterError(str(exc)) from None
    if not _configured_redis(args):
        raise ConfigError(
            "report reads the decisions log a gateway wrote to its Redis, but no Redis is configured: this "
            "command would start a new, empty embedded Redis. Pass --redis-url (the gateway prints its Redis "
            "URL when it starts) or set REDIS_URL."
        )
    client = sync_client(redis_url=args.redis_url)
    try:
        drive(shared_clock.sync(), client)  # --since counts back on Redis's clock, as the log's times do
        since_ms = report.parse_since(args.since)
        result = drive(report.load(args.router, since_ms), client)
        logged = result.total.requests > 0 or client.exists(stream_key(args.router))
    except RedisUnavailableError as exc:
        # The library's advice ends with "or set neither to let it start its embedded Redis", which
        # report refuses (an embedded Redis holds no log): say what helps here instead.
        where = str(exc).split(" Start Redis there", 1)[0]
        raise RedisUnavailableError(
            f"{where.rstrip('.')}. report reads the Redis the gateway writes its decisions log to: check that "
            "it is running and that --redis-url or REDIS_URL is the URL the gateway printed when it started."
        ) from None
    if not logged:
        try:  # a router stored here with no traffic yet is an empty report, not an error
            drive(load_definition(args.router), client)
        except ConfigError:
            raise ConfigError(
                f"No router {args.router!r} and no decisions log for it in this Redis (check --router and --redis-url)."
            ) from None
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        print(report.render(result))
    if args.plot:
        print(f"plot: {report.plot(result, args.plot)}", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from redisvl_llmrouter.evaluation_run import run_eval

    return run_eval(args)


STRATEGIES = ["semantic", "learned", "cost", "latency", "quality", "balanced", "round_robin", "least_loaded"]
CAPABILITIES = ["code", "vision", "tools", "json", "reasoning", "long_context"]


# ------------------------------------------------------------------ argument parsing
class UsageError(LLMRouterError, ValueError):
    """A command line the CLI cannot run: unknown or repeated options, bad values, missing arguments."""


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: a usage error is raised (one line, exit 2, in :func:`main`)
    instead of printed with the usage block; a single-value option given twice is refused."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        if args and str(args[0]).startswith("-") and kwargs.get("action", "store") == "store":
            kwargs["action"] = _StoreOnce
        return super().add_argument(*args, **kwargs)


class _StoreOnce(argparse.Action):
    """``store``, refusing a second occurrence: a repeated ``--limit`` or ``--router`` is a mistake, and
    silently keeping the last one would hide it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None):
        given = namespace.__dict__.setdefault("_given_once", set())
        if self.dest in given:
            raise argparse.ArgumentError(self, "given more than once; give it once")
        given.add(self.dest)
        setattr(namespace, self.dest, values)


def _key(text: str) -> str:
    """An argparse type: an API key, never blank (an empty ``--api-key "$UNSET"`` started with no key at all)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the key is empty (an unset variable?); give a key, or leave --api-key out")
    return text


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _output_file(text: str) -> str:
    """An argparse type: a file we can create (its directory exists), checked before any work runs."""
    parent = Path(text).expanduser().parent
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a file name")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"the directory {str(parent)!r} does not exist")
    return text


def _plot_file(text: str) -> str:
    """An argparse type: an output file in a format matplotlib can write (checked before routing runs)."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise argparse.ArgumentTypeError("plots need matplotlib: pip install 'redisvl-llmrouter[eval]'") from None
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    suffix = Path(text).suffix.lower().lstrip(".")
    if suffix not in formats:
        raise argparse.ArgumentTypeError(f"cannot write a plot as {text!r}: use one of .{', .'.join(formats)}")
    return _output_file(text)


def _input_file(text: str) -> str:
    """An argparse type: an existing regular file (a directory or a missing path fails here, one line)."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a JSONL file")
    if path.exists() and not path.is_file():  # stdin, a pipe, a device: read twice (counted, then loaded)
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a regular file (a pipe or a device); save the data to a file"
        )
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    return text


def _gateway_config_file(text: str) -> str:
    """An argparse type: ``serve --config``'s file; a directory is named as one (the library would say
    there is no config file at that path). A missing file is left to the library, which names it."""
    if Path(text).expanduser().is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; give the gateway config file (YAML or JSON)")
    return text


def _upstream_url(text: str) -> str:
    """An argparse type: ``serve --upstream``, checked by the gateway config's own rule, so the error names
    the option as typed (the config would name its field, behind a second "llmrouter" prefix)."""
    try:
        from redisvl_llmrouter.gateway.config import _http_url
    except ImportError:  # no gateway extra: serve itself says what to install
        return text
    try:
        return _http_url(text) or text
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    """One subcommand: its help line, what adds its arguments, and what runs it."""

    name: str
    help: str
    configure: Configure
    run: Run


#: Every subcommand, in ``--help`` order. Register new ones with :func:`add_command`: they get the
#: global options (before or after the subcommand) and the one-line error handling for free.
COMMANDS: dict[str, Command] = {}

#: Options every subcommand accepts, before or after its name: ``(flags, argparse keyword arguments)``.
GLOBAL_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--redis-url",), {"metavar": "URL", "help": "Redis to use (default: $REDIS_URL, else embedded)"}),
]


def add_command(name: str, help: str, run: Run) -> Callable[[Configure], Configure]:
    """Register a subcommand; decorate the function that adds its arguments to its parser."""

    def register(configure: Configure) -> Configure:
        COMMANDS[name] = Command(name, help, configure, run)
        return configure

    return register


@add_command("route", "route one query and show the tier, model, confidence and saving", cmd_route)
def _route_arguments(route: argparse.ArgumentParser) -> None:
    route.add_argument("text", nargs="+", help="the query (or several queries) to route")
    where = route.add_mutually_exclusive_group()  # (a group's add_argument is argparse's own: _StoreOnce given here)
    where.add_argument(
        "--config",
        action=_StoreOnce,
        default="default",
        help="shipped config name or config file path (default: default)",
    )
    where.add_argument(
        "--router",
        action=_StoreOnce,
        default=None,
        metavar="NAME",
        help="a router stored in Redis (its routes, catalog and memory)",
    )
    route.add_argument("--json", action="store_true", help="print the RouteMatch as JSON")
    route.add_argument("--strategy", choices=STRATEGIES, default=None, help="how to pick the model (default: config)")
    route.add_argument("--max-cost", type=float, default=None, metavar="USD", help="most this request may cost")
    route.add_argument("--max-latency-ms", type=float, default=None, metavar="MS", help="slowest acceptable latency")
    route.add_argument("--min-quality", type=float, default=None, metavar="Q", help="lowest expected quality (0-1)")
    route.add_argument(
        "--capability", action="append", default=[], choices=CAPABILITIES, help="required capability (repeatable)"
    )
    route.add_argument("--best-effort", action="store_true", help="relax latency, cost, quality if nothing qualifies")


@add_command("info", "describe a config: vectorizer, routes, thresholds, metrics", cmd_info)
def _info_arguments(info: argparse.ArgumentParser) -> None:
    info.add_argument("--config", default="default", help="shipped config name or config file path")
    info.add_argument("--json", action="store_true", help="print as JSON (reference texts, no vectors)")


@add_command("export", "write a router with its embeddings to a JSON file", cmd_export)
def _export_arguments(export: argparse.ArgumentParser) -> None:
    export.add_argument("name", help="shipped config name or config file (or, with --from-redis, a router in Redis)")
    export.add_argument("path", type=_output_file, help="where to write the JSON config")
    export.add_argument("--from-redis", action="store_true", help="NAME is a router already stored in Redis")


@add_command("learn", "fill a router's outcome memory from outcome data (JSONL)", cmd_learn)
def _learn_arguments(learn: argparse.ArgumentParser) -> None:
    learn.add_argument(
        "datasets", nargs="+", type=_input_file, help="JSONL files: prompt and per-model quality (and cost)"
    )
    learn.add_argument(
        "--router", required=True, help="a router stored in Redis, else a shipped config or config file to load"
    )
    learn.add_argument(
        "--map", action="append", default=[], metavar="DATA_MODEL=MODEL", help="rename a model of the data"
    )
    learn.add_argument("--name", default=None, help="the router's name in Redis when --router is a config")
    learn.add_argument("--add-models", action="store_true", help="add the data's unknown models to the catalog")
    learn.add_argument(
        "--export", default=None, type=_output_file, metavar="PATH", help="write the router with its memory to a file"
    )


@add_command("serve", "run the OpenAI-compatible gateway (FastAPI + uvicorn)", cmd_serve)
def _serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--config", type=_gateway_config_file, default=None, metavar="PATH", help="gateway config (YAML or JSON)"
    )
    serve.add_argument(
        "--router", default=None, help="router in Redis, shipped config or config file (default: default)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=_count(1), default=1, help="worker processes sharing one Redis")
    serve.add_argument(
        "--upstream",
        type=_upstream_url,
        default=None,
        metavar="URL",
        help="send every model to this OpenAI-compatible base URL",
    )
    serve.add_argument("--upstream-key-env", default=None, metavar="VAR", help="env var with the upstream's key")
    serve.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="env var with comma-separated keys clients must present (default: LLMROUTER_API_KEYS)",
    )


@add_command("upstream", "run the local OpenAI-compatible test upstream (no API key needed)", cmd_upstream)
def _upstream_arguments(upstream: argparse.ArgumentParser) -> None:
    upstream.add_argument("--host", default="127.0.0.1")
    upstream.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    upstream.add_argument(
        "--api-key", default=None, type=_key, metavar="KEY", help="answer only requests bearing this key"
    )


@add_command("report", "cost, savings, quality and latency from the gateway's decisions log", cmd_report)
def _report_arguments(rep: argparse.ArgumentParser) -> None:
    rep.add_argument("--router", default="default", help="the router whose log to read (default: default)")
    rep.add_argument("--since", default=None, help="only requests since: a duration (30m, 2h, 7d) or an ISO date")
    rep.add_argument("--json", action="store_true", help="print the report as JSON")
    rep.add_argument(
        "--plot", type=_plot_file, default=None, metavar="OUT.png", help="draw traffic and cost over time (png/svg/pdf)"
    )


@add_command("eval", "measure cost and quality of a router on outcome data (JSONL)", cmd_eval)
def _eval_arguments(ev: argparse.ArgumentParser) -> None:
    ev.add_argument(
        "datasets", nargs="+", type=_input_file, help="JSONL files with per-model quality and cost per prompt"
    )
    ev.add_argument("--router", default="default", help="shipped config name or config file path")
    ev.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="ROUTE=MODEL[,MODEL]",
        help="dataset model(s) standing for a route (repeatable, once per route); several (A,B) are candidates "
        "for --strategy, the first being the tier router's pick; routes whose model is in the dataset map themselves",
    )
    ev.add_argument(
        "--learn", nargs="+", type=_input_file, default=None, metavar="TRAIN", help="train the learned router on these"
    )
    ev.add_argument(
        "--cv", type=_count(2), default=None, metavar="K", help="K-fold cross-validation of the learned router"
    )
    ev.add_argument(
        "--strategy", action="append", default=[], choices=STRATEGIES, help="compare strategies (repeatable)"
    )
    ev.add_argument("--concat", action="store_true", help="evaluate the datasets as one mixed-traffic set")
    ev.add_argument(
        "--json", dest="json_out", type=_output_file, default=None, metavar="OUT", help="write the report as JSON"
    )
    ev.add_argument("--plot", type=_plot_file, default=None, metavar="OUT.png", help="write the cost-quality plot")
    ev.add_argument("--limit", type=_count(1), default=None, help="use only the first N prompts of each dataset")
    ev.add_argument(
        "--grid",
        type=_count(2),
        default=None,
        metavar="N",
        help="number of cost_weight values the tier router sweeps from 0 to 1 (default 21); not with --learn or "
        "--cv, whose learned router sweeps a fixed log-spaced grid",
    )


def _add_global_options(parser: argparse.ArgumentParser, *, on_command: bool) -> None:
    # On a subcommand the option lands in its own dest, so one given on both sides is caught as a repeat.
    for flags, kwargs in GLOBAL_OPTIONS:
        dest = flags[0].lstrip("-").replace("-", "_")
        if on_command:
            parser.add_argument(*flags, **kwargs, dest=f"{dest}_after_command", default=argparse.SUPPRESS)
        else:
            parser.add_argument(*flags, **kwargs, dest=dest, default=None)


def build_parser() -> argparse.ArgumentParser:
    """The ``llmrouter`` parser: global options, then one subparser per registered command."""
    parser = _Parser(
        prog="llmrouter",
        description="Route queries to the cheapest LLM able to answer them, with Redis as the index.",
        epilog="Redis: --redis-url, else $REDIS_URL, else an embedded Redis started for the command. "
        "Errors: one line on stderr, exit code 2.",
    )
    _add_global_options(parser, on_command=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS.values():
        subparser = sub.add_parser(command.name, help=command.help)
        command.configure(subparser)
        _add_global_options(subparser, on_command=True)
        subparser.set_defaults(func=command.run)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line; global options may come before or after the subcommand, once."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for flags, _ in GLOBAL_OPTIONS:
        dest = flags[0].lstrip("-").replace("-", "_")
        after = args.__dict__.pop(f"{dest}_after_command", None)
        if after is not None:
            if getattr(args, dest) is not None:
                parser.error(f"argument {flags[0]}: given more than once; give it once")
            setattr(args, dest, after)
    args.__dict__.pop("_given_once", None)
    return args


class _ClosableStdout:
    """``sys.stdout`` while a command runs: once the reader has gone (``llmrouter report --plot p.png | head -1``),
    what the command prints is dropped and it carries on, so the files it was asked to write are still written."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._reader_gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        # Later writes, and the flush at exit, go to /dev/null instead of failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno ...: the real stream's
        return getattr(self._stream, name)


def _never_fail_to_encode() -> None:
    """Let stdout and stderr escape what their encoding cannot show (``\\u65e5``) rather than fail the
    command with a UnicodeEncodeError: a cp1252 console or ``PYTHONIOENCODING=ascii`` still gets its answer."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", None) == "strict":
            with contextlib.suppress(ValueError, OSError):  # a closed or detached stream: nothing to print to
                reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; every user error is one line on stderr (secrets redacted) and exit code 2."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _never_fail_to_encode()
    stdout = sys.stdout = _ClosableStdout(sys.stdout)
    try:
        return _run(argv)
    finally:
        stdout.flush()  # here, not at exit: a reader gone by now is caught like one gone earlier
        sys.stdout = stdout._stream


class _Terminated(BaseException):
    """SIGTERM (``timeout``, systemd, a closed terminal), raised where the command is, so that it cleans up
    as it does on Ctrl-C (a router it created is deleted) instead of dying where it stands."""


def _terminate(signum: int, frame: Any) -> None:
    raise _Terminated


def _run(argv: Sequence[str] | None) -> int:
    previous: Any = _terminate  # unchanged until set below
    try:
        args = parse_args(argv)
        _check_paths(args)
        if args.command not in ("serve", "upstream") and threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _terminate)  # the servers shut down on SIGTERM their own way
        return int(args.func(args))
    except BrokenPipeError:  # stderr's reader went away, or a command's own pipe: nothing more to say
        return 0
    except (LLMRouterError, OSError) as exc:  # OSError: unreadable, missing or unwritable files
        print(f"llmrouter: error: {redact(_one_line(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmrouter: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("llmrouter: terminated", file=sys.stderr)
        return 143
    finally:
        if previous is not _terminate:  # main() called in a process of its own (a test, a notebook): as it was
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _check_paths(args: argparse.Namespace) -> None:
    """Refuse an output file that is one of the command's input files, or another of its outputs: the
    report written over the dataset it was made from is that dataset lost."""
    inputs = [*(getattr(args, "datasets", None) or ()), *(getattr(args, "learn", None) or ())]
    inputs += [getattr(args, "router", None), getattr(args, "config", None)]  # a config file, when one is
    outputs = [p for p in (getattr(args, name, None) for name in ("json_out", "plot", "export")) if p]
    if args.command == "export":
        if not args.from_redis:  # with it, NAME is a router in Redis, whatever files share its name
            inputs.append(args.name)
        outputs.append(args.path)
    seen: dict[str, str] = {}
    for path in inputs:
        if isinstance(path, str) and Path(path).expanduser().is_file():
            seen.setdefault(os.path.realpath(Path(path).expanduser()), f"the input file {path!r}")
    for path in outputs:
        real = os.path.realpath(Path(path).expanduser())
        if real in seen:
            raise LLMRouterError(f"{path!r} is {seen[real]}: writing there would replace it; give another file")
        seen[real] = f"another output of this command ({path!r})"


def _one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in message:
        message = f"{message}: {exc.filename}"
    return message


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
