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
