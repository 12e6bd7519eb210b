"""Specification of redisvl_llmrouter.evaluation on tiny hand-made outcome sets.

Every expected number is computed by hand in the comment next to it, so a failure
points at either the arithmetic or the code, never at a data file.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from redisvl_llmrouter.evaluation import (
    CurvePoint,
    OutcomeSet,
    aiq,
    apgr,
    cpt,
    load_outcomes,
    oracle,
    pgr,
    plot,
    report,
    routing_point,
    single_models,
    zero_router,
)

# ----------------------------------------------------------------------- fixtures


def three_models() -> OutcomeSet:
    """Four prompts, models a < b < c in price.

    quality / cost per prompt:
        p0: a 1/1   b 1/2    c 1/4    -> all right, a cheapest
        p1: a 0/1   b 1/2    c 1/4    -> b cheapest right
        p2: a 0/1   b 0/2    c 1/4    -> only c right
        p3: a 0/1   b 0.5/3  c 0.5/2  -> b and c tie at 0.5, c cheaper here
    """
    quality = [[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0.5, 0.5]]
    cost = [[1, 2, 4], [1, 2, 4], [1, 2, 4], [1, 3, 2]]
    return OutcomeSet(
        ids=["p0", "p1", "p2", "p3"],
        prompts=["q0", "q1", "q2", "q3"],
        models=["a", "b", "c"],
        quality=np.array(quality, dtype=float),
        cost=np.array(cost, dtype=float),
        name="three",
    )


def two_models() -> OutcomeSet:
    """Ten prompts; "weak" costs 1 and is right on 0-4, "strong" costs 10, right on 0-7.

    weak quality = 5/10 = 0.5, strong quality = 8/10 = 0.8, gap = 0.3.
    Prompts 5, 6, 7 are the only ones where the strong model helps.
    """
    weak_right = [1] * 5 + [0] * 5
    strong_right = [1] * 8 + [0] * 2
    # Sorted model order: "strong" (column 0) < "weak" (column 1).
    quality = np.array([strong_right, weak_right], dtype=float).T
    cost = np.tile([10.0, 1.0], (10, 1))
    return OutcomeSet(
        ids=[f"p{i}" for i in range(10)],
        prompts=[f"q{i}" for i in range(10)],
        models=["strong", "weak"],
        quality=quality,
        cost=cost,
        name="pair",
    )


STRONG, WEAK = 0, 1


def perfect_curve(outcomes: OutcomeSet) -> list[CurvePoint]:
    """A perfect two-model router's sweep: none, exactly prompts 5-7, all strong."""
    none = np.full(10, WEAK)
    perfect = none.copy()
    perfect[[5, 6, 7]] = STRONG
    every = np.full(10, STRONG)
    return [
        routing_point(outcomes, none, knob=0.0),
        routing_point(outcomes, perfect, knob=0.5),
        routing_point(outcomes, every, knob=1.0),
    ]


def write_jsonl(path: Path, rows: list[object]) -> Path:
    """Write rows (dicts, or raw strings taken as-is) one per line."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def row(rid: str, **models: tuple[float, float]) -> dict[str, object]:
    """One outcome row with {model: (quality, cost)}."""
    return {
        "id": rid,
        "task": "t",
        "prompt": f"prompt {rid}",
        "outcomes": {m: {"quality": q, "cost": c} for m, (q, c) in models.items()},
    }


# ------------------------------------------------------------------------- loader


def test_load_outcomes_reads_rows_and_sorts_models(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "good.jsonl",
        [
            row("r1", m2=(1.0, 0.002), m1=(0.5, 0.001)),
            "",  # blank lines are ignored
            row("r2", m1=(0.0, 0.003), m2=(0.25, 0.004)),
        ],
    )
    data = load_outcomes(path)
    assert data.name == "good"
    assert data.n == 2 and data.skipped == 0
    assert data.ids == ["r1", "r2"] and data.prompts == ["prompt r1", "prompt r2"]
    assert data.models == ["m1", "m2"]  # sorted, whatever the key order in the file
    np.testing.assert_allclose(data.quality, [[0.5, 1.0], [0.0, 0.25]])
    np.testing.assert_allclose(data.cost, [[0.001, 0.002], [0.003, 0.004]])
    assert load_outcomes(path, limit=1).ids == ["r1"]


def test_load_outcomes_skips_rows_missing_a_model(tmp_path: Path) -> None:
    # m1 is in 3/3 rows and m2 in 2/3 (> half): both kept, the row without m2 goes.
    # m3 is in 1/3 rows (not > half): dropped as a model, no row lost for it.
    path = write_jsonl(
        tmp_path / "gaps.jsonl",
        [
            row("r1", m1=(1, 1), m2=(0, 2), m3=(1, 3)),
            row("r2", m1=(1, 1)),
            row("r3", m1=(0, 1), m2=(1, 2)),
        ],
    )
    data = load_outcomes(path)
    assert data.models == ["m1", "m2"]
    assert data.ids == ["r1", "r3"]
    assert data.skipped == 1
    assert data.skipped_for == {"m2": 1} and list(data.dropped) == ["m3"]
    # The report says what was left out, so a user sees it without counting lines.
    summary = report(data, [routing_point(data, [0, 0])])
    assert (summary["skipped"], summary["skipped_for"], summary["dropped"]) == (1, {"m2": 1}, ["m3"])
    full = load_outcomes(write_jsonl(tmp_path / "full.jsonl", [row("r1", m1=(1, 1)), row("r2", m1=(0, 1))]))
    assert report(full, [routing_point(full, [0, 0])])["skipped"] == 0


def test_a_missing_or_null_id_is_the_file_name_and_line_and_a_number_is_its_text(tmp_path: Path) -> None:
    rows = [
        row("r1", m=(1, 1)),
        {**row("x", m=(1, 1)), "id": None},
        {**row("x", m=(1, 1)), "id": 7},
        row("r4", m=(1, 1)),
    ]
    del rows[3]["id"]
    path = write_jsonl(tmp_path / "ids.jsonl", rows)
    # A null id used to become "None" for every such row, so --cv put them all in one fold.
    assert load_outcomes(path).ids == ["r1", "ids.jsonl:2", "7", "ids.jsonl:4"]


def test_the_same_file_in_another_directory_has_the_same_ids_so_the_same_folds(tmp_path: Path) -> None:
    # The full path used to be the id: --cv scores of one file changed with the directory it was read from.
    rows = [{**row("x", m=(1, 1)), "id": None}, {**row("y", m=(1, 1)), "id": None}]
    here = write_jsonl(tmp_path / "a" / "set.jsonl", rows)
    there = write_jsonl(tmp_path / "b" / "c" / "set.jsonl", rows)
    assert load_outcomes(here).ids == load_outcomes(there).ids == ["set.jsonl:1", "set.jsonl:2"]


def test_an_id_used_twice_is_an_error_naming_both_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "dup.jsonl", [row("a", m=(1, 1)), row("b", m=(1, 1)), "", row("a", m=(0, 1))])
    with pytest.raises(ValueError, match=r"dup\.jsonl:4: id 'a' was already used on line 1"):
        load_outcomes(path)
    # Within --limit, the rows not read are not checked.
    assert load_outcomes(path, limit=2).ids == ["a", "b"]


def test_a_byte_order_mark_at_the_start_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(row("r1", m=(1, 1))).encode() + b"\n")
    data = load_outcomes(path)
    assert data.ids == ["r1"] and data.prompts == ["prompt r1"]


def test_load_outcomes_reports_file_and_line_of_malformed_json(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [row("r1", m=(1, 1)), '{"id": "r2",'])
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: malformed JSON"):
        load_outcomes(path)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"id": "r2", "outcomes": {"m": {"quality": 1, "cost": 1}}},
            "missing key 'prompt'",
        ),
        (
            {"id": "r2", "prompt": "p", "outcomes": {"m": {"cost": 1}}},
            "missing 'quality'",
        ),
        (row("r2", m=(1.5, 1)), r"outside \[0, 1\]"),
        (row("r2", m=(1, -0.01)), "negative"),
        (row("r2", m=("high", 1)), "must be a number"),
        ({**row("r2", m=(1, 1)), "prompt": None}, "'prompt' must be a string, got None"),
        ({**row("r2", m=(1, 1)), "prompt": 123}, "'prompt' must be a string, got 123"),
        ({**row("r2", m=(1, 1)), "prompt": ""}, "the prompt is empty or only whitespace"),
        ({**row("r2", m=(1, 1)), "prompt": " \n\t"}, "the prompt is empty or only whitespace"),
        ({**row("r2", m=(1, 1)), "id": ["r2"]}, "'id' must be a string"),
        ({**row("r2", m=(1, 1)), "id": True}, "'id' must be a string"),
        ({**row("r2", m=(1, 1)), "id": "  "}, "'id' is empty"),
    ],
)
def test_load_outcomes_rejects_invalid_rows_with_line_number(
    tmp_path: Path, bad: dict[str, object], message: str
) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [row("r1", m=(1, 1)), bad])
    with pytest.raises(ValueError, match=rf"bad\.jsonl:2: .*{message}"):
        load_outcomes(path)


def test_model_index_names_the_models_on_unknown_name() -> None:
    data = three_models()
    assert data.model_index("c") == 2
    with pytest.raises(ValueError, match="unknown model 'd'.*a, b, c"):
        data.model_index("d")


# --------------------------------------------------------------- operating points


def test_routing_point_averages_the_chosen_cells() -> None:
    # choices a, b, c, a -> quality (1 + 1 + 1 + 0) / 4 = 0.75,
    # cost (1 + 2 + 4 + 1) / 4 = 2.0, shares a 2/4, b 1/4, c 1/4.
    point = routing_point(three_models(), [0, 1, 2, 0], knob=0.3)
    assert point == CurvePoint(knob=0.3, quality=0.75, cost=2.0, shares={"a": 0.5, "b": 0.25, "c": 0.25})


def test_routing_point_rejects_wrong_length_and_bad_index() -> None:
    with pytest.raises(ValueError, match="one choice per prompt"):
        routing_point(three_models(), [0, 1])
    with pytest.raises(ValueError, match="model indices"):
        routing_point(three_models(), [0, 1, 2, 3])


def test_single_models_send_everything_to_one_model() -> None:
    # a: quality (1+0+0+0)/4 = 0.25,   cost 1
    # b: quality (1+1+0+0.5)/4 = 0.625, cost (2+2+2+3)/4 = 2.25
    # c: quality (1+1+1+0.5)/4 = 0.875, cost (4+4+4+2)/4 = 3.5
    singles = single_models(three_models())
    assert [(p.quality, p.cost) for p in singles] == [
        (0.25, 1.0),
        (0.625, 2.25),
        (0.875, 3.5),
    ]
    assert singles[1].shares == {"a": 0.0, "b": 1.0, "c": 0.0}


def test_oracle_takes_cheapest_model_at_best_quality_per_prompt() -> None:
    # p0 -> a (all right, a cheapest), p1 -> b, p2 -> c,
    # p3 -> c (b and c tie at 0.5; c costs 2 there, b costs 3).
    # quality (1 + 1 + 1 + 0.5) / 4 = 0.875, cost (1 + 2 + 4 + 2) / 4 = 2.25.
    best = oracle(three_models())
    assert best.quality == 0.875
    assert best.cost == 2.25
    assert best.shares == {"a": 0.25, "b": 0.25, "c": 0.5}


# ------------------------------------------------------------------- Zero router


def test_zero_router_drops_point_dominated_by_cheaper_better_model() -> None:
    # (3, 0.7) costs more than (2, 0.8) and scores less.
    assert zero_router([(3, 0.7), (1, 0.5), (2, 0.8)]) == [(1, 0.5), (2, 0.8)]


def test_zero_router_drops_point_under_the_chord() -> None:
    # The chord (1, 0.5)-(3, 0.8) is at 0.5 + 0.3 / 2 = 0.65 at cost 2 > 0.55, so a
    # 50/50 random mix of the ends beats the middle model.
    assert zero_router([(1, 0.5), (2, 0.55), (3, 0.8)]) == [(1, 0.5), (3, 0.8)]


def test_zero_router_keeps_better_of_equal_cost_and_accepts_curve_points() -> None:
    singles = single_models(three_models())
    # Chord a-c at cost 2.25: 0.25 + (1.25 / 2.5) * 0.625 = 0.5625 < 0.625: b stays.
    assert zero_router(singles) == [(1.0, 0.25), (2.25, 0.625), (3.5, 0.875)]
    assert zero_router([(1, 0.2), (1, 0.4)]) == [(1, 0.4)]


# ---------------------------------------------------------------------------- AIQ


def test_aiq_on_a_hand_made_hull() -> None:
    # Hull (1, .5) (2, .8) (4, .9), range [1, 5]:
    #   [1, 2] trapezoid (.5 + .8) / 2 * 1 = 0.65
    #   [2, 4] trapezoid (.8 + .9) / 2 * 2 = 1.70
    #   [4, 5] flat at the last quality .9 * 1 = 0.90
    # (0.65 + 1.70 + 0.90) / 4 = 0.8125
    hull = [(1, 0.5), (2, 0.8), (4, 0.9)]
    assert aiq(hull, (1, 5)) == pytest.approx(0.8125)
    # A dominated (5, .7) and a below-chord (3, .8) point change nothing.
    assert aiq(hull + [(5, 0.7), (3, 0.8)], (1, 5)) == pytest.approx(0.8125)


def test_aiq_counts_zero_below_the_cheapest_point() -> None:
    # Hull (2, .8) (4, .9), range [1, 5]: [1, 2] -> 0, [2, 4] -> 1.7, [4, 5] -> 0.9.
    # (0 + 1.7 + 0.9) / 4 = 0.65
    assert aiq([(2, 0.8), (4, 0.9)], (1, 5)) == pytest.approx(0.65)


def test_aiq_from_zero_matches_routerbench_reference_formula() -> None:
    # RouterBench calc_AIQ: trapz(hull + (max_x, last_y)) / max_x with max_x = 4:
    # (0.65 + 1.70) / 4 = 0.5875; our range (0, 4) gives 0 on [0, 1], the same.
    assert aiq([(1, 0.5), (2, 0.8), (4, 0.9)], (0, 4)) == pytest.approx(0.5875)


def test_aiq_degenerate_range_is_the_hull_value() -> None:
    # At cost 1.5, halfway between (1, .5) and (2, .8): 0.65.
    assert aiq([(1, 0.5), (2, 0.8)], (1.5, 1.5)) == pytest.approx(0.65)
    with pytest.raises(ValueError, match="low <= high"):
        aiq([(1, 0.5)], (2, 1))


def test_router_on_the_zero_hull_scores_the_zero_aiq() -> None:
    # Singles (1, .25) (2.25, .625) (3.5, .875), range [1, 3.5]:
    #   [1, 2.25]   (.25 + .625) / 2 * 1.25 = 0.546875
    #   [2.25, 3.5] (.625 + .875) / 2 * 1.25 = 0.9375
    # (0.546875 + 0.9375) / 2.5 = 0.59375
    data = three_models()
    curve = [routing_point(data, np.full(4, j), knob=float(j)) for j in range(3)]
    rep = report(data, curve)
    assert rep["zero_aiq"] == pytest.approx(0.59375)
    assert rep["aiq"] == pytest.approx(rep["zero_aiq"])


def test_oracle_as_router_aiq_follows_the_end_convention() -> None:
    # Oracle alone: one point (2.25, .875). Range [1, 3.5]:
    #   [1, 2.25]   below its cheapest point -> 0
    #   [2.25, 3.5] flat .875 * 1.25 = 1.09375
    # 1.09375 / 2.5 = 0.4375 (below the Zero router's 0.59375: one point cannot
    # serve the cheap budgets; a sweep reaching down to model a would be credited).
    data = three_models()
    rep = report(data, [oracle(data)])
    assert rep["aiq"] == pytest.approx(0.4375)
    assert rep["oracle"] == {"quality": 0.875, "cost": 2.25}


# ------------------------------------------------------------- two-model metrics


def test_pgr_is_fraction_of_the_gap() -> None:
    # (0.65 - 0.5) / (0.8 - 0.5) = 0.5
    assert pgr(0.65, 0.5, 0.8) == pytest.approx(0.5)
    assert pgr(0.5, 0.5, 0.8) == 0.0 and pgr(0.8, 0.5, 0.8) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="undefined"):
        pgr(0.6, 0.7, 0.7)


def test_random_router_recovers_half_the_gap() -> None:
    # Random mix: quality = 0.5 + 0.3 * share, so PGR = share; the ends (0, .5) and
    # (1, .8) are added. Area under PGR = share on [0, 1] = 1/2.
    # CPT(x) is x: 50% of calls for 50% PGR, 80% for 80%.
    points = [(0.25, 0.575), (0.5, 0.65), (0.75, 0.725)]
    assert apgr(points, 0.5, 0.8) == pytest.approx(0.5)
    assert cpt(points, 0.5, 0.8, 0.5) == pytest.approx(0.5)
    assert cpt(points, 0.5, 0.8, 0.8) == pytest.approx(0.8)


def test_perfect_router_metrics() -> None:
    # Perfect sweep (share, PGR): (0, 0) (0.3, 1) (1, 1).
    # APGR = 0.3 * (0 + 1) / 2 + 0.7 * 1 = 0.15 + 0.70 = 0.85
    # CPT(50%) = 0.5 * 0.3 = 0.15, CPT(80%) = 0.8 * 0.3 = 0.24 (linear on [0, 0.3]).
    data = two_models()
    points = [(p.shares["strong"], p.quality) for p in perfect_curve(data)]
    assert points == [(0.0, 0.5), (0.3, 0.8), (1.0, 0.8)]
    assert apgr(points, 0.5, 0.8) == pytest.approx(0.85)
    assert cpt(points, 0.5, 0.8, 0.5) == pytest.approx(0.15)
    assert cpt(points, 0.5, 0.8, 0.8) == pytest.approx(0.24)


def test_cpt_is_none_when_target_is_never_reached() -> None:
    # The perfect curve tops out at PGR 1; PGR 1.2 would need quality 0.86.
    points = [(0.0, 0.5), (0.3, 0.8), (1.0, 0.8)]
    assert cpt(points, 0.5, 0.8, 1.2) is None


def test_cpt_takes_the_first_crossing_on_a_curve_that_dips() -> None:
    # PGRs: (0, 0) (0.2, 0.6) (0.4, 0.4) (1, 1). PGR 0.5 is first reached on
    # [0, 0.2]: 0.2 * 0.5 / 0.6 = 1/6.
    points = [(0.2, 0.68), (0.4, 0.62)]
    assert cpt(points, 0.5, 0.8, 0.5) == pytest.approx(1 / 6)


# ------------------------------------------------------------------------- report


def test_report_for_two_models_has_routellm_metrics() -> None:
    data = two_models()
    rep = report(data, perfect_curve(data))
    assert set(rep) == {
        "dataset", "n", "models", "aiq", "zero_aiq", "best_single", "cheapest_single",
        "oracle", "singles", "curve", "cost_range", "strong", "weak", "apgr", "cpt50",
        "cpt80", "skipped", "skipped_for", "dropped",
    }  # fmt: skip
    assert (rep["dataset"], rep["n"], rep["models"]) == ("pair", 10, ["strong", "weak"])
    assert (rep["strong"], rep["weak"]) == ("strong", "weak")
    assert rep["best_single"] == {"model": "strong", "quality": 0.8, "cost": 10.0}
    assert rep["cheapest_single"] == {"model": "weak", "quality": 0.5, "cost": 1.0}
    # Oracle: prompts 5-7 strong, the rest weak (right, or both wrong -> cheaper).
    # quality 8 / 10 = 0.8, cost (3 * 10 + 7 * 1) / 10 = 3.7.
    assert rep["oracle"] == {"quality": pytest.approx(0.8), "cost": pytest.approx(3.7)}
    assert rep["cost_range"] == [1.0, 10.0]
    assert rep["apgr"] == pytest.approx(0.85)
    assert rep["cpt50"] == pytest.approx(0.15) and rep["cpt80"] == pytest.approx(0.24)
    # Router hull (1, .5) (3.7, .8); (10, .8) is dominated. Range [1, 10]:
    # (.5 + .8) / 2 * 2.7 + .8 * 6.3 = 1.755 + 5.04 = 6.795; / 9 = 0.755.
    assert rep["aiq"] == pytest.approx(0.755)
    # Zero router: the chord (1, .5)-(10, .8) averages (.5 + .8) / 2 = 0.65.
    assert rep["zero_aiq"] == pytest.approx(0.65)
    assert rep["curve"][1] == {
        "knob": 0.5,
        "quality": pytest.approx(0.8),
        "cost": pytest.approx(3.7),
        "shares": {"strong": pytest.approx(0.3), "weak": pytest.approx(0.7)},
    }
    json.dumps(rep)  # JSON-ready: plain floats, lists and dicts only


def test_report_strong_model_can_be_named() -> None:
    data = two_models()
    rep = report(data, perfect_curve(data), strong="weak")
    assert (rep["strong"], rep["weak"]) == ("weak", "strong")
    with pytest.raises(ValueError, match="unknown model"):
        report(data, perfect_curve(data), strong="gpt-9")


def test_report_for_three_models_has_no_two_model_metrics() -> None:
    data = three_models()
    rep = report(data, [oracle(data)])
    assert set(rep) == {
        "dataset", "n", "models", "aiq", "zero_aiq", "best_single", "cheapest_single",
        "oracle", "singles", "curve", "cost_range", "skipped", "skipped_for", "dropped",
    }  # fmt: skip
    assert rep["best_single"]["model"] == "c"
    assert rep["cheapest_single"]["model"] == "a"
    assert [s["model"] for s in rep["singles"]] == ["a", "b", "c"]
    assert rep["cost_range"] == [1.0, 3.5]
    json.dumps(rep)


def test_best_single_ties_go_to_the_cheaper_model() -> None:
    # x and y both score 1.0 on the only prompt; y costs 1 < 2.
    data = OutcomeSet(["p"], ["q"], ["x", "y", "z"], np.array([[1.0, 1.0, 0.0]]),
                      np.array([[2.0, 1.0, 0.5]]))  # fmt: skip
    rep = report(data, single_models(data))
    assert rep["best_single"]["model"] == "y"


# --------------------------------------------------------------------------- plot


def test_plot_writes_a_png(tmp_path: Path) -> None:
    data = two_models()
    out = tmp_path / "curve.png"
    plot(report(data, perfect_curve(data)), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_free_models_draws_a_linear_cost_axis_without_a_warning(tmp_path: Path) -> None:
    # A log axis cannot show a cost of 0: matplotlib warned on stderr, and the curve was not drawn.
    import warnings

    data = OutcomeSet(["p", "q"], ["p", "q"], ["x", "y"], np.array([[1.0, 0.0], [0.0, 1.0]]), np.zeros((2, 2)))
    out = tmp_path / "free.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot(report(data, single_models(data)), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_accepts_several_labelled_reports(tmp_path: Path) -> None:
    pair, three = two_models(), three_models()
    reports = {
        "perfect": report(pair, perfect_curve(pair)),
        "oracle": report(three, [oracle(three)]),
    }
    out = tmp_path / "many.png"
    plot(reports, out)
    assert out.stat().st_size > 0
