"""``llmrouter eval`` end to end on small outcome files made here (the shared data is not needed)."""

from __future__ import annotations

import json

import pytest

from redisvl_llmrouter.cli import main

PROMPTS = [
    ("hi there!", 1.0, 1.0, 1.0),
    ("what is the capital of Spain?", 1.0, 1.0, 1.0),
    ("write a python function that reverses a linked list", 0.0, 1.0, 1.0),
    ("explain how TCP congestion control works", 0.0, 1.0, 1.0),
    ("prove that there are infinitely many primes", 0.0, 0.0, 1.0),
    ("design a globally distributed database with strong consistency", 0.0, 0.0, 1.0),
]
COSTS = {"cheap": 0.0001, "mid": 0.001, "top": 0.01}


@pytest.fixture(autouse=True)
def _shared_redis(redis_url, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)


def write_set(path, models):
    with path.open("w") as f:
        for i, (prompt, *quality) in enumerate(PROMPTS):
            outcomes = {m: {"quality": q, "cost": COSTS[m]} for m, q in zip(COSTS, quality, strict=True) if m in models}
            f.write(json.dumps({"id": str(i), "task": "t", "prompt": prompt, "outcomes": outcomes}) + "\n")
    return path


def test_three_model_set_writes_the_report_and_the_plot(tmp_path, capsys):
    data = write_set(tmp_path / "three.jsonl", {"cheap", "mid", "top"})
    out, png = tmp_path / "out.json", tmp_path / "out.png"
    code = main(
        ["eval", str(data), "--map", "simple=cheap", "--map", "standard=mid", "--map", "expert=top",
         "--json", str(out), "--plot", str(png), "--grid", "5"]
    )  # fmt: skip
    assert code == 0
    (report,) = json.loads(out.read_text())["reports"]
    for key in ("n", "aiq", "zero_aiq", "best_single", "oracle", "curve"):
        assert key in report
    assert report["n"] == 6 and len(report["curve"]) == 5
    assert report["best_single"] == {"model": "top", "quality": 1.0, "cost": 0.01}
    assert report["oracle"]["quality"] == 1.0
    # The sweep goes from ranking by distance (w=0) to the cheapest passing route (w=1): cost never rises.
    costs = [p["cost"] for p in report["curve"]]
    assert costs == sorted(costs, reverse=True)
    assert png.stat().st_size > 10_000
    assert "AIQ router" in capsys.readouterr().out


def test_two_model_set_adds_apgr_and_cpt(tmp_path):
    data = write_set(tmp_path / "two.jsonl", {"cheap", "top"})
    out = tmp_path / "out.json"
    assert main(["eval", str(data), "--map", "simple=cheap", "--map", "standard=top", "--map", "expert=top",
                 "--json", str(out), "--grid", "3"]) == 0  # fmt: skip
    (report,) = json.loads(out.read_text())["reports"]
    assert report["strong"] == "top" and report["weak"] == "cheap"
    assert 0.0 <= report["apgr"] <= 1.0 and "cpt50" in report and "cpt80" in report


def test_a_route_without_a_dataset_model_is_a_clear_error(tmp_path, capsys):
    data = write_set(tmp_path / "three.jsonl", {"cheap", "mid", "top"})
    assert main(["eval", str(data), "--map", "simple=cheap"]) == 2
    assert "No dataset model for route(s) ['standard', 'expert']" in capsys.readouterr().err


MAP3 = ["--map", "simple=cheap", "--map", "standard=mid", "--map", "expert=top"]


def test_a_bom_file_is_read_and_rows_skipped_for_a_missing_model_are_reported(tmp_path, capsys):
    data = write_set(tmp_path / "three.jsonl", {"cheap", "mid", "top"})
    lines = data.read_text().splitlines()
    row = json.loads(lines[2])
    del row["outcomes"]["mid"]  # one row without mid: it is left out, and the output says so
    lines[2] = json.dumps(row)
    data.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")  # as Notepad saves UTF-8
    out = tmp_path / "out.json"
    assert main(["eval", str(data), *MAP3, "--json", str(out), "--grid", "3"]) == 0
    (report,) = json.loads(out.read_text())["reports"]
    assert report["n"] == 5 and report["skipped"] == 1 and report["skipped_for"] == {"mid": 1}
    assert "; skipped 1 row without outcomes for mid" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("maps", "message"),
    [
        (["--map", "simple=cheap", "--map", "simple=mid"], "--map gives route 'simple' twice"),
        (["--map", "simple=cheap,mid"], "the tier router sends route 'simple' to one model"),
    ],
)
def test_the_tier_router_refuses_a_route_mapped_twice_or_to_several_models(tmp_path, capsys, maps, message):
    data = write_set(tmp_path / "three.jsonl", {"cheap", "mid", "top"})
    assert main(["eval", str(data), *maps, "--map", "standard=mid", "--map", "expert=top"]) == 2
    assert message in capsys.readouterr().err


GREETINGS = ["hi there", "hello!", "good morning", "hey, how are you?", "good evening", "howdy", "hiya",
             "greetings, friend", "good afternoon", "hello, nice to meet you"]  # fmt: skip
PROOFS = ["prove there are infinitely many primes", "prove the square root of two is irrational",
          "prove that every tree with n nodes has n-1 edges", "prove the sum of the first n odd numbers is n squared",
          "prove that a bounded monotone sequence converges", "prove the pigeonhole principle",
          "prove that the halting problem is undecidable", "prove the triangle inequality for real numbers",
          "prove that there is no largest even number", "prove Euclid's lemma about primes"]  # fmt: skip


def write_clustered(path, copies=2, ids=True, first=0):
    """Greetings: the cheap model is as good as the top one. Proofs: only the top one succeeds.

    Copy 0 is the prompts as written, copies from 1 on are variants of them (``first`` skips some)."""
    with path.open("w") as f:
        for c in range(first, copies):
            for kind, prompts in (("greeting", GREETINGS), ("proof", PROOFS)):
                for i, prompt in enumerate(prompts):
                    cheap = 1.0 if kind == "greeting" else 0.0
                    outcomes = {"cheap": {"quality": cheap, "cost": 0.0001}, "top": {"quality": 1.0, "cost": 0.01}}
                    text = prompt if c == 0 else f"{prompt} (variant {c})"
                    ident = f"{kind}{i}-{c}" if ids else None
                    f.write(json.dumps({"id": ident, "prompt": text, "outcomes": outcomes}) + "\n")
    return path


def test_cross_validated_learned_router_beats_random_mixing_on_clustered_outcomes(tmp_path):
    data = write_clustered(tmp_path / "clustered.jsonl")
    out = tmp_path / "cv.json"
    args = ["eval", str(data), "--cv", "4", "--map", "simple=cheap", "--map", "standard=top", "--map", "expert=top"]
    assert main([*args, "--json", str(out)]) == 0
    (report,) = json.loads(out.read_text())["reports"]
    for key in ("dataset", "n", "aiq", "zero_aiq", "best_single", "oracle", "curve", "apgr", "cpt50", "cpt80"):
        assert key in report
    assert report["router"] == "learned" and report["n"] == 40 and len(report["settings"]) == 4
    assert report["aiq"] > report["zero_aiq"] + 0.1
    # Perfect ranking (every proof to the top model first) reaches APGR 0.75 here: half the calls are proofs.
    assert report["apgr"] == pytest.approx(0.75) and report["cpt50"] == pytest.approx(0.25)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_null_ids_are_the_file_and_line_so_every_fold_learns_from_the_others(tmp_path):
    # "id": null used to become "None" on every row: one fold held everything and learned from nothing.
    data = write_clustered(tmp_path / "nulls.jsonl", ids=False)
    out = tmp_path / "cv.json"
    args = ["eval", str(data), "--cv", "4", "--map", "simple=cheap", "--map", "standard=top", "--map", "expert=top"]
    assert main([*args, "--json", str(out)]) == 0
    (report,) = json.loads(out.read_text())["reports"]
    assert len(report["settings"]) == 4 and report["aiq"] > report["zero_aiq"] + 0.1


def test_a_fold_too_small_to_tune_on_keeps_the_configured_settings_not_the_previous_folds(tmp_path):
    # Tuning keeps its base when a training split is too small (under 8 rows), and the base was the router's
    # learning, which the fold before had set to what it tuned on this fold's own test prompts.
    from redisvl_llmrouter import pretrained
    from redisvl_llmrouter.learning.tuning import folds_by_id

    rows = [(f"{kind}{i}-{c}", f"{prompt} (variant {c})", kind) for c in range(3)
            for kind, prompts in (("greeting", GREETINGS), ("proof", PROOFS)) for i, prompt in enumerate(prompts)]  # fmt: skip
    first, second = folds_by_id([r[0] for r in rows], 2)
    chosen = [rows[i] for i in first[:5]] + [rows[i] for i in second[:12]]  # fold 1 learns from 5 rows only
    data = tmp_path / "small.jsonl"
    with data.open("w") as f:
        for ident, prompt, kind in chosen:
            cheap = 1.0 if kind == "greeting" else 0.0
            outcomes = {"cheap": {"quality": cheap, "cost": 0.0001}, "top": {"quality": 1.0, "cost": 0.01}}
            f.write(json.dumps({"id": ident, "prompt": prompt, "outcomes": outcomes}) + "\n")
    config = json.loads(pretrained.resolve("default").read_text())
    config["learning"].update(neighbours=7, shrinkage=3.0)  # on no tuning grid: the configured settings
    (tmp_path / "seven.json").write_text(json.dumps(config))
    out = tmp_path / "small.json"
    args = ["eval", str(data), "--cv", "2", "--router", str(tmp_path / "seven.json"), "--map", "simple=cheap",
            "--map", "standard=top", "--map", "expert=top"]  # fmt: skip
    assert main([*args, "--json", str(out)]) == 0
    (report,) = json.loads(out.read_text())["reports"]
    tuned, untuned = report["settings"]
    assert untuned == {"neighbours": 7, "shrinkage": 3.0} != tuned


def test_cv_whose_folds_put_every_prompt_together_is_a_clear_error(tmp_path, capsys):
    # Folds go by a hash of the id: "a" and "b0" both land in fold 0 of 2, so fold 1 is empty and fold 0
    # would learn from nothing.
    data = tmp_path / "two.jsonl"
    outcomes = {"cheap": {"quality": 1.0, "cost": 0.0001}, "top": {"quality": 1.0, "cost": 0.01}}
    data.write_text("".join(json.dumps({"id": i, "prompt": p, "outcomes": outcomes}) + "\n" for i, p in
                            [("a", "hello"), ("b0", "prove the four colour theorem")]))  # fmt: skip
    args = ["eval", str(data), "--cv", "2", "--map", "simple=cheap", "--map", "standard=top", "--map", "expert=top"]
    assert main(args) == 2
    assert "--cv 2: every prompt of two falls in the same fold" in capsys.readouterr().err


def test_learn_on_one_set_and_evaluate_on_another(tmp_path, capsys):
    train = write_clustered(tmp_path / "train.jsonl", copies=3, first=1)  # variants only: none of the test prompts
    test = write_clustered(tmp_path / "test.jsonl", copies=1)
    out = tmp_path / "held_out.json"
    args = ["eval", str(test), "--learn", str(train), "--map", "simple=cheap", "--map", "standard=top",
            "--map", "expert=top", "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    (report,) = json.loads(out.read_text())["reports"]
    assert report["train"] == "train" and report["learned_share"] == 1.0
    assert report["aiq"] > report["zero_aiq"]
    assert "in-sample" not in capsys.readouterr().err


def test_learning_on_the_test_prompts_themselves_is_said_to_be_in_sample(tmp_path, capsys):
    # It reported in-sample numbers as held-out ones, without a word.
    train = write_clustered(tmp_path / "train.jsonl", copies=2)
    test = write_clustered(tmp_path / "test.jsonl", copies=1)
    args = ["eval", str(test), "--learn", str(train), "--map", "simple=cheap", "--map", "standard=top",
            "--map", "expert=top"]  # fmt: skip
    assert main(args) == 0
    assert "warning: 20 of the 20 prompts of test are in the --learn data too" in capsys.readouterr().err


def test_learning_on_the_test_prompts_spelled_otherwise_is_said_to_be_in_sample_too(tmp_path, capsys):
    # A training copy with other case or spacing embeds the same, and went unnoticed.
    test = write_clustered(tmp_path / "test.jsonl", copies=1)
    train = tmp_path / "train.jsonl"
    rows = [json.loads(line) for line in test.read_text().splitlines()]
    train.write_text("".join(json.dumps({**r, "prompt": r["prompt"].upper() + "  \n\n"}) + "\n" for r in rows))
    args = ["eval", str(test), "--learn", str(train), "--map", "simple=cheap", "--map", "standard=top",
            "--map", "expert=top"]  # fmt: skip
    assert main(args) == 0
    assert "warning: 20 of the 20 prompts of test are in the --learn data too" in capsys.readouterr().err


def test_strategies_side_by_side_in_one_table_and_one_plot(tmp_path, capsys):
    data = write_clustered(tmp_path / "clustered.jsonl")
    out, png = tmp_path / "s.json", tmp_path / "s.png"
    args = ["eval", str(data), "--cv", "4", "--map", "simple=cheap,top", "--map", "standard=top", "--map",
            "expert=top", "--strategy", "semantic", "--strategy", "learned", "--strategy", "cost",
            "--strategy", "quality", "--json", str(out), "--plot", str(png)]  # fmt: skip
    assert main(args) == 0
    strategies = json.loads(out.read_text())["strategies"]["clustered"]
    assert set(strategies) == {"semantic", "learned", "cost", "quality"}
    assert strategies["cost"]["curve"][0]["cost"] <= strategies["quality"]["curve"][0]["cost"]
    assert strategies["quality"]["curve"][0]["quality"] == 1.0  # top model everywhere: it was best in training
    captured = capsys.readouterr()
    table = captured.out
    assert "strategies compared on the same prompts" in table and "learned" in table
    assert png.stat().st_size > 10_000
    assert "can only choose within a route" not in captured.err  # simple has two models to choose from


def test_within_route_strategies_on_one_model_per_route_warn_that_they_equal_the_tier_router(tmp_path, capsys):
    data = write_clustered(tmp_path / "clustered.jsonl")
    out = tmp_path / "s.json"
    args = ["eval", str(data), "--cv", "4", "--map", "simple=cheap", "--map", "standard=top", "--map",
            "expert=top", "--strategy", "semantic", "--strategy", "cost", "--strategy", "quality",
            "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert (
        "warning: strategy cost, quality can only choose within a route; with one model per route they equal "
        "the tier router (semantic) - map several models to a route with --map ROUTE=A,B" in err
    )
    # What the warning says: opposite strategies, the same choices, those of the tier router.
    strategies = json.loads(out.read_text())["strategies"]["clustered"]
    (cost,), (quality,) = strategies["cost"]["curve"], strategies["quality"]["curve"]
    assert cost == quality
    assert cost["shares"]["cheap"] == strategies["semantic"]["route_shares_at_config"]["simple"]


def test_the_learned_strategy_needs_outcomes_to_learn_from(tmp_path, capsys):
    data = write_clustered(tmp_path / "clustered.jsonl")
    args = ["eval", str(data), "--map", "simple=cheap", "--map", "standard=top", "--map", "expert=top",
            "--strategy", "learned"]  # fmt: skip
    assert main(args) == 2
    assert "needs outcomes to learn from" in capsys.readouterr().err


def _table_rows(out: str) -> dict[str, list[str]]:
    """The printed strategy table: strategy -> [quality, $/prompt, AIQ]."""
    lines = out.split("strategies compared on the same prompts", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["strategy"]) + 1
    rows = {}
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        name, *values = line.split()
        rows[name] = values
    return rows


def test_the_strategy_rows_are_each_at_the_configured_setting_so_equal_choices_print_equal_numbers(tmp_path, capsys):
    data = write_clustered(tmp_path / "clustered.jsonl")
    out = tmp_path / "s.json"
    args = ["eval", str(data), "--cv", "4", "--map", "simple=cheap", "--map", "standard=top", "--map",
            "expert=top", "--strategy", "semantic", "--strategy", "cost", "--strategy", "learned",
            "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "with one model per route it equals the tier router (semantic)" in captured.err
    rows = _table_rows(captured.out)
    # The warning says cost makes the tier router's choices: the table shows the same quality and cost.
    assert rows["semantic"][:2] == rows["cost"][:2]
    assert "at the router's configured settings" in captured.out
    strategies = json.loads(out.read_text())["strategies"]["clustered"]
    assert strategies["semantic"]["at_config"] == strategies["cost"]["at_config"]
    for name, report in strategies.items():
        point = report["at_config"]
        assert rows[name][:2] == [f"{point['quality']:.4f}", f"{point['cost']:.2e}"]
    # The sweep stays for the AIQ (and the plot) of semantic and learned.
    assert len(strategies["semantic"]["curve"]) == 21 and len(strategies["learned"]["curve"]) > 1
    assert rows["semantic"][2] == f"{strategies['semantic']['aiq']:.4f}"


def test_the_tier_router_evaluates_the_config_where_a_changed_router_has_its_name(tmp_path, monkeypatch):
    import redis

    from redisvl_llmrouter import SemanticRouter
    from redisvl_llmrouter.embedded import EmbeddedRedis

    server = EmbeddedRedis().start()
    try:
        monkeypatch.setenv("REDIS_URL", server.url)
        SemanticRouter.from_pretrained("default", redis_url=server.url)
        SemanticRouter.from_existing("default", redis_url=server.url).update_route_thresholds({"simple": 0.5})
        data = write_set(tmp_path / "three.jsonl", {"cheap", "mid", "top"})
        out = tmp_path / "out.json"
        assert main(["eval", str(data), *MAP3, "--json", str(out), "--grid", "3"]) == 0
        (report,) = json.loads(out.read_text())["reports"]
        assert report["router"] == "default" and report["n"] == 6
        assert redis.Redis.from_url(server.url).keys("eval-*") == []  # the run's own router is gone
        assert SemanticRouter.from_existing("default", redis_url=server.url).route_thresholds["simple"] == 0.5
    finally:
        server.stop()


def test_grid_sets_the_tier_routers_sweep_when_strategies_are_compared(tmp_path):
    data = write_set(tmp_path / "three.jsonl", {"cheap", "mid", "top"})
    out = tmp_path / "s.json"
    args = ["eval", str(data), *MAP3, "--strategy", "semantic", "--strategy", "cost", "--grid", "5"]
    assert main([*args, "--json", str(out)]) == 0
    strategies = json.loads(out.read_text())["strategies"]["three"]
    assert len(strategies["semantic"]["curve"]) == 5
