"""Reports on the decisions log: each figure checkable by hand from the entries."""

from __future__ import annotations

import pytest

from redisvl_llmrouter.observability.report import format_usd, parse_since, render, summarise


def completion(ts: int, route: str, model: str, cost: float | None, baseline: float | None, **kw):
    return {"type": "completion", "ts": ts, "route": route, "model": model, "cost": cost,
            "baseline_cost": baseline, "status": "ok", "latency_ms": 10.0, **kw}  # fmt: skip


ENTRIES = [
    completion(1_000, "simple", "cheap", 0.001, 0.010, request_id="r1", latency_ms=5.0),
    completion(2_000, "simple", "cheap", 0.001, 0.010, request_id="r2", latency_ms=7.0, cache=True),
    completion(3_000, "expert", "dear", 0.010, 0.010, request_id="r3", latency_ms=100.0, fallbacks=1),
    completion(
        4_000, "expert", "dear", None, None, status="error", error="all_models_failed", latency_ms=3.0, fallbacks=2
    ),  # a failed request went through fallbacks: no answer came from one
    {"type": "feedback", "ts": 5_000, "request_id": "r1", "model": "cheap", "quality": 1.0},
    {"type": "feedback", "ts": 5_001, "request_id": "r3", "model": "dear", "quality": 0.5},
    {"type": "feedback", "ts": 5_002, "request_id": "gone", "model": "cheap", "quality": 0.0},
]


def test_totals_cost_saving_and_errors():
    report = summarise(ENTRIES, router="r")
    t = report.total
    assert (t.requests, t.errors, t.fallbacks, t.cache_hits) == (4, 1, 1, 1)
    assert t.cost_usd == pytest.approx(0.012) and t.baseline_usd == pytest.approx(0.030)
    assert t.saving_usd == pytest.approx(0.018) and t.saving_fraction == pytest.approx(0.6)
    assert report.errors_by_kind == {"all_models_failed": 1}
    assert report.cache_hit_rate == pytest.approx(1 / 3)  # of the three answered requests


def test_latency_percentiles_are_over_answered_requests_nearest_rank():
    t = summarise(ENTRIES, router="r").total
    assert (t.latency_p50_ms, t.latency_p99_ms) == (7.0, 100.0)


def test_quality_from_feedback_by_tier_and_model():
    report = summarise(ENTRIES, router="r")
    assert report.by_route["simple"].quality == 1.0 and report.by_route["expert"].quality == 0.5
    # feedback naming a request outside the log still counts under its model
    assert report.by_model["cheap"].quality == pytest.approx(0.5) and report.by_model["cheap"].feedback == 2
    assert report.total.feedback == 3


def test_since_drops_older_entries():
    report = summarise(ENTRIES, router="r", since_ms=3_000)
    assert report.total.requests == 2 and set(report.by_route) == {"expert"}


def test_the_series_buckets_traffic_and_cost_over_time():
    report = summarise(ENTRIES, router="r")
    s = report.series
    assert s.bucket_s == 1 and len(s.t_ms) == 4
    assert s.requests_by_model == {"cheap": [1, 1, 0, 0], "dear": [0, 0, 1, 1]}
    assert sum(s.cost_usd) == pytest.approx(0.012) and sum(s.baseline_usd) == pytest.approx(0.030)


def test_an_empty_log_reports_zeros_not_errors():
    report = summarise([], router="r")
    assert report.total.requests == 0 and report.total.saving_fraction is None
    assert "0 requests" in render(report)
    assert "  cost -: no requests in this window" in render(report).splitlines()  # it said $0.0000 against $0.0000


def test_render_names_the_figures():
    breakers = {"dear": {"state": "open", "trips": 2}, "cheap": {"state": "half_open", "trips": 1}}
    text = render(summarise(ENTRIES, router="r", breakers=breakers))
    assert "saved $0.0180 (60.0%)" in text and "dear open (2 trips)" in text and "all_models_failed 1" in text
    assert "cheap half-open (1 trip)" in text  # as the docs and the dashboard name the state


def test_the_breakers_line_names_the_telling_breakers_and_counts_the_quiet_ones():
    quiet = {f"passthrough/m{i}": {"state": "closed", "trips": 0} for i in range(150)}
    text = render(summarise(ENTRIES, router="r", breakers={"dear": {"state": "open", "trips": 2}, **quiet}))
    assert "  breakers: dear open (2 trips), 150 other closed, never tripped" in text.splitlines()
    alone = render(summarise(ENTRIES, router="r", breakers=quiet))
    assert "  breakers: all closed, never tripped" in alone.splitlines()


def test_since_accepts_durations_and_dates():
    assert parse_since("2h", now_s=10_000) == (10_000 - 7_200) * 1000
    assert parse_since("2026-11-23T00:00") == 1_795_392_000_000
    assert parse_since("99999999999d") == 0 and parse_since("1900-01-01") == 0  # before the epoch: everything
    with pytest.raises(ValueError, match="duration back from now"):
        parse_since("yesterday")


@pytest.mark.parametrize("value", ["9" * 400 + "d", "9" * 305 + "w"])
def test_a_duration_too_large_to_compute_is_a_readable_error_not_an_overflow(value):
    # 400 nines is inf as a float: int(now - inf) raised OverflowError, a traceback from the CLI.
    with pytest.raises(ValueError, match=r"the duration is too large to compute; leave --since out") as caught:
        parse_since(value)
    assert len(str(caught.value)) < 200  # the number is cut, not printed in full


def test_a_live_window_spans_since_to_now_with_idle_buckets_as_zeros():
    report = summarise(ENTRIES, router="r", since_ms=0, until_ms=600_000)
    s = report.series
    assert s.bucket_s == 10 and s.t_ms[0] == 0 and s.t_ms[-1] == 600_000
    assert sum(s.requests_by_model["cheap"]) == 2 and s.requests_by_model["cheap"][-1] == 0


def test_repeated_feedback_on_a_request_counts_once_with_its_latest_value():
    entries = [
        completion(1_000, "simple", "cheap", 0.001, 0.010, request_id="r1"),
        {"type": "feedback", "ts": 2_000, "request_id": "r1", "model": "cheap", "quality": 0.2},
        {"type": "feedback", "ts": 3_000, "request_id": "r1", "model": "cheap", "quality": 0.8},
        {"type": "feedback", "ts": 4_000, "request_id": "r1", "model": "cheap", "quality": 0.4},
    ]
    report = summarise(entries, router="r")
    assert report.by_model["cheap"].feedback == 1 and report.by_model["cheap"].quality == pytest.approx(0.4)


def test_requests_without_a_tier_say_what_they_were():
    entries = [
        completion(1_000, None, "m", 0.001, 0.010, strategy="passthrough"),
        completion(2_000, None, "m", 0.0, 0.010, strategy=None, cache=True),
        completion(3_000, None, "m", None, None, strategy=None, status="error", error="circuit_open"),
    ]
    assert set(summarise(entries, router="r").by_route) == {"(passthrough)", "(cache)", "(unmatched)"}


def test_feedback_naming_another_model_counts_under_that_model_and_not_the_route():
    entries = [
        completion(1_000, "simple", "cheap", 0.001, 0.010, request_id="r1"),
        {"type": "feedback", "ts": 2_000, "request_id": "r1", "model": "cheap", "quality": 1.0},
        {"type": "feedback", "ts": 2_001, "request_id": "r1", "model": "dear", "quality": 0.0},
    ]
    report = summarise(entries, router="r")
    assert (report.by_model["cheap"].quality, report.by_model["cheap"].feedback) == (1.0, 1)
    assert (report.by_model["dear"].quality, report.by_model["dear"].feedback) == (0.0, 1)
    assert (report.by_route["simple"].quality, report.by_route["simple"].feedback) == (1.0, 1)


def test_an_entry_newer_than_the_live_window_lengthens_the_series_instead_of_failing():
    late = [completion(130_000, "simple", "cheap", 0.001, 0.010)]  # written after the reader's clock
    series = summarise(late, router="r", since_ms=0, until_ms=60_000).series
    assert sum(series.requests_by_model["cheap"]) == 1
    assert len(series.t_ms) == len(series.cost_usd) == len(series.requests_by_model["cheap"])
    assert series.t_ms[-1] <= 130_000 < series.t_ms[-1] + series.bucket_s * 1000


@pytest.mark.parametrize("entries", [[], ENTRIES], ids=["empty", "seconds apart"])
def test_the_plot_is_written_for_an_empty_window_and_a_short_one(tmp_path, entries):
    from redisvl_llmrouter.observability.report import plot

    path = plot(summarise(entries, router="r"), tmp_path / "p.png")
    assert path.stat().st_size > 1000


def test_log_entries_without_a_numeric_time_are_skipped_not_fatal():
    import json

    from redisvl_llmrouter.observability.decisions import parse_entries

    def item(i: int, ts: object) -> tuple:
        return (f"{i}-0".encode(), [b"d", json.dumps({"type": "completion", "ts": ts, "status": "ok"}).encode()])

    reply = [
        item(1, 1_000),
        item(2, "abc"),
        item(3, float("nan")),
        item(4, None),
        item(5, 2_000.0),
        (b"6-0", [b"d", b"{"]),
    ]
    entries = parse_entries(reply)
    assert [e["ts"] for e in entries] == [1_000, 2_000]
    assert summarise(entries, router="r").total.requests == 2


def test_small_costs_print_with_their_significant_digits():
    tiny = [completion(1_000, "simple", "cheap", 1.2e-05, 3.4e-05, request_id="r1")]
    text = render(summarise(tiny, router="r"))
    assert "$0.000012" in text and "$0.000034" in text and "$0.0000 " not in text
    assert "cost $0.0020, against $0.0200" in render(summarise(ENTRIES[:2], router="r"))  # ordinary: 4 decimals


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.0, "$0.0000"),
        (0.0123, "$0.0123"),
        (-0.0123, "-$0.0123"),  # the sign before the dollar sign
        (-0.00005, "-$0.000050"),
        (1234.5, "$1,234.50"),  # thousands separated, as the dashboard prints them
        (-1234.5, "-$1,234.50"),
        (99.99999, "$100.00"),  # from $1, to the cent
        (100.0, "$100.00"),
        (9.9996e-5, "$0.00010"),  # rounds up to $0.0001: 2 significant digits, as $0.0001 has, not "$0.000100"
        (9.996e-6, "$0.000010"),  # 2 significant digits, not 3
        (0.000138, "$0.00014"),  # 2 significant digits, as smaller amounts have, not "$0.0001"
        (0.0000056, "$0.0000056"),
        (0.00099999, "$0.0010"),  # rounds up to $0.001: 4 decimals, as $0.001 has
        (0.5, "$0.5000"),  # below $1: 4 decimals at least
        (0.999999, "$1.00"),  # rounds up to $1: to the cent, as $1 is
        (12.3456, "$12.35"),  # from $1: to the cent
        (1e-6, "$0.0000010"),
        (1e-13, "<$0.000001"),  # not zero, not a wall of zeros
        (-1e-13, "-<$0.000001"),
    ],
)
def test_dollars_print_sign_first_thousands_separated_one_precision_per_size(value, shown):
    assert format_usd(value) == shown


def test_a_small_bill_prints_its_cost_baseline_and_saving_with_digits_that_add_up():
    # A gateway session's figures: at 4 decimals they read "cost $0.0004, against $0.0008, saved $0.0005".
    session = [
        completion(1_000, "simple", "cheap", 0.000138, 0.000417),
        completion(2_000, "expert", "mid", 0.0002453, 0.000418),
    ]
    text = render(summarise(session, router="r"))
    assert "cost $0.00038, against $0.00084 on the baseline model: saved $0.00045 (54.1%)" in text
    rows = {line.split()[0]: line.split()[3] for line in text.splitlines()[-2:]}
    assert rows == {"cheap": "$0.00014", "mid": "$0.00025"}  # 2 significant digits at every size below $0.001


def test_counts_of_one_are_singular():
    one = [completion(1_000, "simple", "cheap", 0.001, 0.01, request_id="r1"),
           {"type": "feedback", "ts": 2_000, "request_id": "r1", "model": "cheap", "quality": 1.0}]  # fmt: skip
    text = render(summarise(one, router="r", breakers={"cheap": {"state": "open", "trips": 1}}))
    assert text.startswith("router r: 1 request from ")
    assert "quality 1.000 from 1 feedback report\n" in text and "cheap open (1 trip)" in text


def test_a_saving_below_zero_prints_its_sign_before_the_dollar_sign():
    dearer = [completion(1_000, "simple", "m", 0.002, 0.001)]  # answered by a model dearer than the baseline
    assert "saved -$0.0010 (-100.0%)" in render(summarise(dearer, router="r"))


def test_long_and_odd_names_stay_distinct_on_one_line_each():
    long_a, long_b = "tier-" + "x" * 40 + "-alpha", "tier-" + "x" * 40 + "-beta"
    entries = [completion(1_000, long_a, "m", 0.001, 0.01), completion(2_000, long_b, "m", 0.001, 0.01),
               completion(3_000, "line\nbreak", "m", 0.001, 0.01)]  # fmt: skip
    lines = render(summarise(entries, router="r")).splitlines()
    rows = [line for line in lines if line.startswith("tier-")]
    assert len(rows) == 2 and rows[0].split()[0].endswith("-alpha") and rows[1].split()[0].endswith("-beta")
    assert any(line.startswith("line\\nbreak ") for line in lines)  # one row, the newline shown escaped
    very_long = "t" * 30 + "middle" * 10 + "-the-end"
    text = render(summarise([completion(1_000, very_long, "m", 0.001, 0.01)], router="r"))
    assert "…" in text and "-the-end" in text  # cut in the middle: the distinct end stays


UNPRICED = [
    completion(1_000, "simple", "cheap", 0.001, 0.010),
    completion(2_000, "expert", "unlisted/model", None, None, strategy="passthrough"),  # no catalog price
    completion(3_000, "expert", "unlisted/model", None, None),
    completion(4_000, "expert", "unlisted/model", None, None, status="error", error="upstream_error"),  # not billed
]


def test_answered_requests_without_a_known_cost_are_counted_as_unpriced_not_free():
    report = summarise(UNPRICED, router="r")
    assert (report.total.unpriced, report.total.cost_usd) == (2, pytest.approx(0.001))
    assert report.by_model["unlisted/model"].unpriced == 2 and report.by_model["cheap"].unpriced == 0
    assert report.by_route["expert"].unpriced == 2
    assert report.model_dump()["by_model"]["unlisted/model"]["unpriced"] == 2  # --json has it per row
    text = render(report)
    assert (
        "  cost $0.0010 over 1 request with a known cost, against $0.0100 on the baseline model: saved $0.0090"
        " (90.0%); 2 requests without a known cost" in text.splitlines()
    )
    header = next(line for line in text.splitlines() if line.startswith("model "))
    assert header.split()[1:6] == ["requests", "errors", "cost", "unpriced", "saving"]
    row = next(line for line in text.splitlines() if line.startswith("unlisted/model"))
    assert row.split()[1:5] == ["3", "1", "-", "2"]  # its cost unknown, not $0.0000


def test_a_report_where_nothing_is_priced_shows_no_cost_rather_than_zero():
    text = render(summarise(UNPRICED[1:], router="r"))
    assert "  cost -: none of the 2 requests answered has a known cost, so no saving either" in text.splitlines()
    assert "$0.0000" not in text.split("\n\n")[1]  # the tier table: no row calls the traffic free


def test_a_slice_of_failed_requests_only_shows_no_cost_rather_than_zero():
    # A failed request has no known cost (a stream cut short may still be billed): not $0.
    failed = [completion(1_000, "expert", "dear", None, None, status="error", error="stream_interrupted")]
    text = render(summarise(ENTRIES[:1] + failed, router="r"))
    row = next(line for line in text.splitlines() if line.startswith("dear"))
    assert row.split()[1:4] == ["1", "1", "-"]
    alone = render(summarise(failed, router="r"))
    assert "  cost -: no request was answered, so no known cost and no saving" in alone.splitlines()


def test_answers_the_baseline_could_not_price_are_in_the_cost_and_said_to_be_outside_the_saving():
    # A configured baseline model that lost its price: the answer's cost is known, its baseline is not.
    entries = [*ENTRIES[:3], completion(4_000, "simple", "cheap", 0.002, None, request_id="r5")]
    report = summarise(entries, router="r")
    t = report.total
    assert (t.unbaselined, t.cost_usd, t.baseline_usd) == (1, pytest.approx(0.014), pytest.approx(0.030))
    assert t.saving_usd == pytest.approx(0.018)  # over the three requests the baseline priced
    assert (
        "  cost $0.0140, against $0.0300 on the baseline model for the 3 requests it could price (which cost"
        " $0.0120): saved $0.0180 (60.0%)" in render(report).splitlines()
    )


def test_a_router_name_with_control_characters_prints_escaped_like_tier_and_model_names():
    header = render(summarise(ENTRIES, router="evil\x1b[2J\u202e")).splitlines()[0]
    assert header.startswith("router evil\\x1b[2J\\u202e: ") and header.isprintable()


def test_the_unpriced_column_shows_only_when_some_request_had_no_known_cost():
    assert "unpriced" not in render(summarise(ENTRIES, router="r"))  # a failed request is not unpriced


def test_a_log_entry_keeps_the_head_and_tail_of_a_long_text_and_its_length():
    """The log is capped in entries: entries of a megabyte each (store_text on) made it 100 GB at the cap."""
    from redisvl_llmrouter.observability.decisions import MAX_LOGGED_TEXT_CHARS, text_fields

    assert text_fields("short", True) == {"text": "short"}
    fields = text_fields("h" * 600_000 + "t" * 400_000, True)
    assert fields["text_chars"] == 1_000_000 and len(fields["text"]) <= MAX_LOGGED_TEXT_CHARS + 3
    assert fields["text"].startswith("h" * 5_000) and fields["text"].endswith("t" * 5_000)
    assert set(text_fields("secret prompt", False)) == {"text_sha256"}
