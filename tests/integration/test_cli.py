"""The ``llmrouter`` command, in process and through the installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from redisvl_llmrouter import pretrained
from redisvl_llmrouter.cli import main


@pytest.fixture(autouse=True)
def _shared_redis(redis_url, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)


def test_route_prints_tier_model_confidence_alternatives_and_saving(capsys):
    assert main(["route", "hello, how are you?"]) == 0
    out = capsys.readouterr().out
    assert "tier          simple" in out
    assert "openai/gpt-4.1-nano" in out and "confidence" in out and "alternatives" in out
    assert "chance that this tier is right (calibrated on labelled queries; distance 0.547)" in out
    # nano: (5 prompt tokens x $0.10 + 256 answer tokens x $0.40) / 1M against opus at $5 / $25
    assert "saving        98.4% vs anthropic/claude-opus-4-5 ($0.006425 for this request)" in out
    assert "strategy      learned  (no similar outcomes yet: the tier decides)" in out


def test_route_measures_the_saving_against_the_catalogs_dearest_model_as_the_gateway_does(capsys, tmp_path):
    # A route model the catalog lacks is priced by its route's cost for routing; as the baseline it made
    # `route` report savings against a model the gateway's reports never measure against.
    data = json.loads(pretrained.resolve("default").read_text())
    data["name"] = "route-priced"
    for route in data["routes"]:
        if route["name"] == "standard":
            route.update(model="x/route-priced", models=["x/route-priced"], cost=1000.0)
    (tmp_path / "priced.json").write_text(json.dumps(data))
    assert main(["route", "explain garbage collection", "--config", str(tmp_path / "priced.json"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "x/route-priced" and out["price"] == {"input_per_1m": 1000.0, "output_per_1m": 1000.0}
    assert out["saving"]["against_model"] == "anthropic/claude-opus-4-5" and out["saving"]["fraction"] < 0


def test_route_says_when_a_config_is_not_calibrated(capsys, tmp_path):
    data = json.loads(pretrained.resolve("default").read_text())
    del data["routing_config"]["confidence"]
    data["name"] = "uncalibrated"  # a different router than the calibrated "default" in the same Redis
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert main(["route", "hello, how are you?", "--config", str(tmp_path / "old.json")]) == 0
    assert (
        "confidence    0.36  1 - distance/threshold, not a probability (config not calibrated"
        in capsys.readouterr().out
    )


def test_route_applies_strategy_and_constraints_and_explains_exclusions(capsys):
    args = ["route", "describe the picture I attached", "--capability", "code", "--strategy", "cost"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "strategy      cost" in out and "constraints   capabilities=['code']" in out
    assert "excluded      openai/gpt-4.1-nano: lacks code" in out
    assert "model         openai/gpt-4.1-mini" in out  # the cheapest candidate that writes code


def test_route_shows_the_chosen_models_price_and_one_saving_in_text_and_json(capsys):
    # Matched tier "standard" (sonnet, route cost 3), but max-cost leaves only nano and mini: cost picks nano.
    args = ["route", "explain garbage collection", "--strategy", "cost", "--max-cost", "0.001"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == "standard" and data["model"] == "openai/gpt-4.1-nano"
    # The chosen model's catalog price, not the route's cost (3.0, still the JSON's "cost").
    assert data["price"] == {"input_per_1m": 0.1, "output_per_1m": 0.4} and data["cost"] == 3.0
    assert "model         openai/gpt-4.1-nano  ($0.1 in / $0.4 out per 1M tokens)" in text
    # One saving: this request on nano against the same request on the catalog's dearest model (opus).
    saving = data["saving"]
    assert saving["against_model"] == "anthropic/claude-opus-4-5"
    assert saving["cost_usd"] == pytest.approx(data["decision"]["estimated_cost"])
    tokens = data["decision"]["prompt_tokens"]
    assert saving["against_cost_usd"] == pytest.approx((tokens * 5 + 256 * 25) / 1e6)
    assert saving["fraction"] == pytest.approx(1 - saving["cost_usd"] / saving["against_cost_usd"])
    assert (
        f"saving        {saving['fraction']:.1%} vs anthropic/claude-opus-4-5 "
        f"(${saving['against_cost_usd']:.6f} for this request)" in text
    )
    assert f"est. cost     ${saving['cost_usd']:.6f} for this request" in text


def test_route_counts_a_repeated_capability_once(capsys):
    assert main(["route", "hello", "--capability", "code", "--capability", "code"]) == 0
    assert "constraints   capabilities=['code']\n" in capsys.readouterr().out


def test_route_with_no_eligible_model_is_one_line_and_exit_2(capsys):
    assert main(["route", "hello", "--max-cost", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmrouter: error: No model satisfies this request (") and err.count("\n") == 1


def test_learn_fills_the_memory_and_exports_it(tmp_path, capsys, name):
    data = tmp_path / "outcomes.jsonl"
    rows = [
        {"id": str(i), "prompt": f"convert {i} miles to kilometers", "outcomes": {
            "openai/gpt-4.1-nano": {"quality": 0.0, "cost": 0.0001},
            "anthropic/claude-sonnet-4-5": {"quality": 1.0, "cost": 0.004}}}
        for i in range(5)
    ]  # fmt: skip
    data.write_text("\n".join(json.dumps(r) for r in rows))
    out_file = tmp_path / "learned.json"
    assert main(["learn", str(data), "--router", "default", "--name", name, "--export", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "5 new rows, 0 updated, 0 evicted; memory now 5 rows" in out
    assert len(json.loads(out_file.read_text())["outcomes"]) == 5
    assert main(["route", "convert 3 miles to kilometers", "--config", str(out_file)]) == 0
    assert "(from similar past outcomes)" in capsys.readouterr().out
    assert main(["route", "convert 3 miles to kilometers", "--router", name]) == 0  # the stored router itself
    assert "(from similar past outcomes)" in capsys.readouterr().out
    from redisvl_llmrouter import SemanticRouter

    SemanticRouter.from_existing(name).delete()


def test_learn_refuses_unknown_models_unless_mapped_or_added(tmp_path, capsys, name):
    data = tmp_path / "outcomes.jsonl"
    data.write_text(json.dumps({"prompt": "hi", "outcomes": {"my/model": {"quality": 1.0}}}))
    learn = ["learn", str(data), "--router", "default", "--name", name]
    assert main(learn) == 2
    assert "does not know the model(s) ['my/model']" in capsys.readouterr().err
    assert main([*learn, "--map", "my/model=openai/gpt-4.1"]) == 0
    assert main([*learn, "--add-models"]) == 0
    from redisvl_llmrouter import SemanticRouter

    router = SemanticRouter.from_existing(name)
    assert "my/model" in router.catalog.names and router.memory_info().rows == 1
    router.delete()


def test_route_prints_control_characters_of_the_query_escaped_one_line_per_row(capsys):
    query = "line1\nline2\x1b[31mRED\tend\u200b"
    assert main(["route", query, "hi"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\t" not in out and "\u200b" not in out  # nothing reaches the terminal raw
    assert "query         line1\\nline2\\x1b[31mRED\\tend\\u200b\n" in out  # escaped as report escapes names
    for block in out.split("\n\n"):  # each query's block: every line is one of route's rows
        assert [line.split()[0] for line in block.splitlines()[:2]] == ["query", "tier"]
    assert main(["route", query, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["query"] == query  # the JSON keeps the text as it was


def test_route_json(capsys):
    assert main(["route", "architect a distributed system for millions of users", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["name"], data["model"]) == ("expert", "anthropic/claude-opus-4-5")
    assert 0 < data["confidence"] <= 1 and data["saving"]["fraction"] == 0.0
    assert {a["name"] for a in data["alternatives"]} <= {"simple", "standard"}


def test_info_describes_the_config(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "sentence-transformers/all-MiniLM-L6-v2 (384 dims, float32; the packaged copy, offline)" in out
    assert "check_accuracy" in out and "anthropic/claude-sonnet-4-5" in out


def test_export_then_route_with_the_file(tmp_path, capsys):
    path = tmp_path / "mine.json"
    assert main(["export", "default", str(path)]) == 0
    assert json.loads(path.read_text())["routes"][0]["references"][0]["vector"]
    from redisvl_llmrouter import pretrained

    shipped, exported = pretrained.read("default"), pretrained.read(str(path))
    assert shipped.description and shipped.metrics  # so the next line checks something
    assert (exported.description, exported.metrics) == (shipped.description, shipped.metrics)
    assert main(["route", "explain garbage collection", "--config", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["model"] == "anthropic/claude-sonnet-4-5"


def test_errors_are_one_readable_line_and_exit_2(capsys):
    assert main(["route", "hi", "--config", "no-such-config"]) == 2
    assert (
        "llmrouter: error: No pretrained config named 'no-such-config'; available: default" in capsys.readouterr().err
    )
    assert main(["route", "   "]) == 2
    assert "empty" in capsys.readouterr().err


def test_console_script_help_and_route():
    exe = shutil.which("llmrouter", path=str(Path(sys.executable).parent)) or "llmrouter"
    help_text = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("route", "info", "export", "eval", "learn"):
        assert command in help_text
    result = subprocess.run(
        [exe, "route", "hello, how are you?", "--json"], capture_output=True, text=True, check=True, env=os.environ
    )
    assert json.loads(result.stdout)["model"] == "openai/gpt-4.1-nano"


def test_several_queries_are_routed_in_one_batch(capsys):
    assert main(["route", "hello, how are you?", "architect a distributed system for millions of users", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data] == ["simple", "expert"]


@pytest.fixture
def own_redis(monkeypatch):
    """A Redis of the test's own (REDIS_URL points at it), whose ``default`` the test may change freely."""
    from redisvl_llmrouter.embedded import EmbeddedRedis

    server = EmbeddedRedis().start()
    monkeypatch.setenv("REDIS_URL", server.url)
    yield server.url
    server.stop()


def _changed_default(url: str):
    """The ``default`` router in that Redis, its threshold changed from Python as the tester did."""
    from redisvl_llmrouter import SemanticRouter

    SemanticRouter.from_pretrained("default", redis_url=url)
    router = SemanticRouter.from_existing("default", redis_url=url)
    router.update_route_thresholds({"simple": 0.5})
    return router


def test_route_on_a_redis_holding_a_changed_default_says_how_to_use_it(own_redis, capsys):
    _changed_default(own_redis)
    assert main(["route", "hello"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmrouter: error: A different router named 'default' is already in Redis (route ")
    assert "pass --router default" in err and "--redis-url" in err and err.count("\n") == 1
    assert "overwrite=True" not in err and "from_existing()" not in err  # options the CLI does not have
    assert main(["route", "hello", "--router", "default"]) == 0  # what the message says works
    assert "tier " in capsys.readouterr().out


def _outcome_file(path: Path, n: int = 4) -> Path:
    rows = [
        {"id": str(i), "prompt": f"private prompt number {i}", "outcomes": {
            "openai/gpt-4.1-nano": {"quality": 0.0, "cost": 0.0001},
            "anthropic/claude-sonnet-4-5": {"quality": 1.0, "cost": 0.004}}}
        for i in range(n)
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_export_of_a_shipped_config_is_the_config_whatever_redis_holds_under_its_name(own_redis, tmp_path, capsys):
    import redis

    shipped = pretrained.read("default")
    # A stored "default" with learned rows (prompts included): the export of the shipped config leaves them out.
    assert main(["learn", str(_outcome_file(tmp_path / "o.jsonl")), "--router", "default"]) == 0
    assert main(["export", "default", str(tmp_path / "a.json")]) == 0
    exported = pretrained.read(str(tmp_path / "a.json"))
    assert exported.outcomes == [] and "private prompt" not in (tmp_path / "a.json").read_text()
    assert exported.name == "default" and exported.definition() == shipped.definition()
    assert (exported.description, exported.metrics) == (shipped.description, shipped.metrics)
    # A changed stored "default": not an error, and the file still holds the shipped thresholds.
    _changed_default(own_redis)
    assert main(["export", "default", str(tmp_path / "b.json")]) == 0
    assert pretrained.read(str(tmp_path / "b.json")).definition() == shipped.definition()
    assert "wrote " in capsys.readouterr().out
    # The temporary router it went through is gone; the stored one is untouched.
    client = redis.Redis.from_url(own_redis)
    assert client.keys("*export*") == []
    from redisvl_llmrouter import SemanticRouter

    stored = SemanticRouter.from_existing("default", redis_url=own_redis)
    assert stored.route_thresholds["simple"] == 0.5 and stored.memory_info().rows == 4


def test_exports_of_a_stored_router_keep_the_description_and_metrics_of_its_config(own_redis, tmp_path, capsys):
    shipped = pretrained.read("default")
    data = _outcome_file(tmp_path / "o.jsonl")
    learned = tmp_path / "learned.json"
    assert main(["learn", str(data), "--router", "default", "--name", "mine", "--export", str(learned)]) == 0
    from_redis = tmp_path / "from-redis.json"
    assert main(["export", "mine", str(from_redis), "--from-redis"]) == 0
    capsys.readouterr()
    for path in (learned, from_redis):
        config = pretrained.read(str(path))
        assert len(config.outcomes) == 4
        assert (config.description, config.metrics) == (shipped.description, shipped.metrics)
        assert main(["info", "--config", str(path)]) == 0
        assert capsys.readouterr().out.startswith(f"mine: {shipped.description}\n")
    # A changed threshold voids the measured accuracy, not what the router is.
    from redisvl_llmrouter import SemanticRouter

    SemanticRouter.from_existing("mine", redis_url=own_redis).update_route_thresholds({"simple": 0.5})
    assert main(["export", "mine", str(from_redis), "--from-redis"]) == 0
    config = pretrained.read(str(from_redis))
    assert config.description == shipped.description and config.metrics == {}


def test_learn_loads_a_config_file_whose_path_cannot_name_a_stored_router(own_redis, tmp_path):
    """A path with a space is no router name: the file is loaded, not refused as an unreadable router."""
    from redisvl_llmrouter import SemanticRouter

    data = _outcome_file(tmp_path / "o.jsonl")
    (tmp_path / "my configs").mkdir()
    config = tmp_path / "my configs" / "mine.json"
    assert main(["learn", str(data), "--router", "default", "--name", "mine", "--export", str(config)]) == 0
    SemanticRouter.from_existing("mine", redis_url=own_redis).delete()
    assert main(["learn", str(data), "--router", str(config)]) == 0
    assert SemanticRouter.from_existing("mine", redis_url=own_redis).memory_info().rows == 4


def test_docs_cli_md_names_every_learn_option(tmp_path, own_redis, capsys):
    import argparse

    from redisvl_llmrouter.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["learn"]
    options = {o for a in sub._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
    docs = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    row = next(line for line in docs.splitlines() if line.startswith("| `llmrouter learn"))
    assert {"--name", "--add-models"} <= options
    assert [o for o in sorted(options) if o not in row and o != "--redis-url"] == []
    # The usage cli.md gives for a new router, on a shared data set's models, works as written.
    data = tmp_path / "shared.jsonl"
    row_ = {"prompt": "Find the degree of Q(sqrt(2)) over Q.", "outcomes": {
        "gpt-4-1106-preview": {"quality": 1.0, "cost": 0.0003},
        "mistralai/Mixtral-8x7B-Instruct-v0.1": {"quality": 0.0, "cost": 0.00002}}}  # fmt: skip
    data.write_text(json.dumps(row_) + "\n")
    assert "llmrouter learn data.jsonl --router default --name my-router --add-models" in docs
    assert main(["learn", str(data), "--router", "default", "--name", "my-router", "--add-models"]) == 0
    assert "created router 'my-router': 1 new rows" in capsys.readouterr().out
    assert main(["learn", str(data), "--router", "my-router"]) == 0
    assert "attached to router 'my-router'" in capsys.readouterr().out


def test_info_json_leaves_out_the_vectors_of_learned_outcome_rows_too(tmp_path, capsys, name):
    learned = tmp_path / "learned.json"
    data = _outcome_file(tmp_path / "o.jsonl")
    assert main(["learn", str(data), "--router", "default", "--name", name, "--export", str(learned)]) == 0
    from redisvl_llmrouter import SemanticRouter

    SemanticRouter.from_existing(name).delete()
    assert all(row["vector"] for row in json.loads(learned.read_text())["outcomes"])  # the file has them
    capsys.readouterr()
    assert main(["info", "--config", str(learned), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [row["text"] for row in shown["outcomes"]] == [f"private prompt number {i}" for i in range(4)]
    assert not any("vector" in row for row in shown["outcomes"])
    assert not any("vector" in ref for route in shown["routes"] for ref in route["references"])


EXE = shutil.which("llmrouter", path=str(Path(sys.executable).parent)) or "llmrouter"


def run_with_stdout_closed(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The console script with a reader that went away before it printed (``llmrouter ... | head -0``):
    unbuffered, so the first print meets the closed pipe rather than the flush at exit."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([EXE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    proc.stdout.close()  # type: ignore[union-attr]
    err = proc.stderr.read()  # type: ignore[union-attr]
    return subprocess.CompletedProcess(proc.args, proc.wait(timeout=300), "", err)


def test_report_writes_its_plot_when_the_reader_of_stdout_has_gone(tmp_path, name):
    from redisvl_llmrouter import SemanticRouter

    router = SemanticRouter.from_pretrained("default", name=name)  # stored, no traffic yet: an empty report
    try:
        result = run_with_stdout_closed(["report", "--router", name, "--plot", "p.png"], tmp_path)
    finally:
        router.delete()
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_eval_writes_its_json_and_plot_when_the_reader_of_stdout_has_gone(tmp_path):
    models = ["openai/gpt-4.1-nano", "anthropic/claude-sonnet-4-5", "anthropic/claude-opus-4-5"]
    prompts = ["hello there", "explain garbage collection", "prove there are infinitely many primes"]
    rows = [{"prompt": p, "outcomes": {m: {"quality": 1.0, "cost": 0.001 * (j + 1)} for j, m in enumerate(models)}}
            for p in prompts]  # fmt: skip
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_with_stdout_closed(["eval", "d.jsonl", "--json", "e.json", "--plot", "e.png", "--grid", "3"], tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert json.loads((tmp_path / "e.json").read_text())["reports"][0]["n"] == 3
    assert (tmp_path / "e.png").stat().st_size > 10_000


def test_non_ascii_text_on_a_console_that_cannot_show_it_is_escaped_not_a_crash(tmp_path):
    def run_as(encoding: str, args: list[str]) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONIOENCODING": encoding}
        return subprocess.run([EXE, *args], capture_output=True, text=True, encoding="utf-8", env=env, timeout=300)

    routed = run_as("cp1252", ["route", "日本の首都は？"])
    assert routed.returncode == 0, routed.stderr
    assert "query         \\u65e5\\u672c\\u306e\\u9996\\u90fd\\u306f\\uff1f\n" in routed.stdout
    config = json.loads(pretrained.resolve("default").read_text())
    config["description"] = "Routeur par défaut, 専門家"
    (tmp_path / "uni.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    described = run_as("ascii", ["info", "--config", str(tmp_path / "uni.json")])
    assert described.returncode == 0, described.stderr
    assert described.stdout.startswith("default: Routeur par d\\xe9faut, \\u5c02\\u9580\\u5bb6\n")
