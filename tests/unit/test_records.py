"""Outcome records: what ``learn`` accepts, as strictly as ``feedback`` accepts one outcome."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from redisvl_llmrouter import InvalidFeedbackError
from redisvl_llmrouter.learning.records import MAX_COST_USD, parse_record, read_records

#: The shared outcome data next to the repository (``../shared/data/routing``), where it is checked out.
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "routing"


def record(**outcome: object) -> dict:
    return {"prompt": "what is 2 + 2?", "outcomes": {"m/cheap": outcome}}


def test_an_outcome_has_quality_and_optionally_cost_and_latency():
    parsed = parse_record(record(quality=1, cost=0.0001, latency_ms=250))
    outcome = parsed.outcomes["m/cheap"]
    assert (outcome.quality, outcome.cost, outcome.latency_ms) == (1.0, 0.0001, 250.0)
    assert parse_record(record(quality=0.5)).outcomes["m/cheap"].cost is None


@pytest.mark.parametrize("key", ["costt", "latency", "Quality", "tokens"])
def test_a_misspelt_or_unknown_outcome_key_is_refused_by_name_not_dropped(key):
    with pytest.raises(
        InvalidFeedbackError, match=rf"outcomes\.m/cheap\.{key}: unknown key.*quality, cost, latency_ms"
    ):
        parse_record(record(quality=1.0, **{key: 1.0}))


@pytest.mark.parametrize(
    ("field", "value"), [("quality", "0.5"), ("quality", True), ("cost", "0.01"), ("latency_ms", False)]
)
def test_numbers_must_be_numbers_not_strings_or_booleans(field, value):
    outcome = {"quality": 1.0, field: value}
    with pytest.raises(InvalidFeedbackError, match=rf"{field}: must be a number, got {value!r}"):
        parse_record(record(**outcome))
    flat = {"prompt": "hi", "model": "m/cheap", **outcome}  # the one-model shape is as strict
    with pytest.raises(InvalidFeedbackError, match=field):
        parse_record(flat)


def test_a_cost_above_the_documented_bound_is_refused_as_feedback_refuses_it():
    assert parse_record(record(quality=1.0, cost=MAX_COST_USD)).outcomes["m/cheap"].cost == MAX_COST_USD
    for absurd in (MAX_COST_USD * 1.5, 1e39, 1e300):  # 1e39 and past: no float32 holds it, Redis would refuse the sum
        with pytest.raises(InvalidFeedbackError, match=r"outcomes\.m/cheap\.cost: .*less than or equal to 1000000"):
            parse_record(record(quality=1.0, cost=absurd))


def test_other_keys_of_a_record_are_ignored(tmp_path):
    path = tmp_path / "outcomes.jsonl"
    path.write_text(json.dumps({"id": "a.1", "task": "math", **record(quality=1.0)}) + "\n")
    assert [r.id for r in read_records(path)] == ["a.1"]


def test_a_numeric_id_is_read_as_its_text_as_eval_reads_it(tmp_path):
    # learn refused "id": 5 ("Input should be a valid string") in a file eval read without a word.
    path = tmp_path / "outcomes.jsonl"
    path.write_text(json.dumps({"id": 5, **record(quality=1.0)}) + "\n")
    assert [r.id for r in read_records(path)] == ["5"]
    path.write_text(json.dumps({"id": True, **record(quality=1.0)}) + "\n")
    with pytest.raises(InvalidFeedbackError, match="id"):
        list(read_records(path))


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared outcome data is not on this machine")
def test_every_shared_outcome_file_still_loads():
    for path in sorted(SHARED.glob("*.jsonl")):
        assert sum(1 for _ in read_records(path)) > 0, path


def test_a_file_with_a_byte_order_mark_reads_like_one_without(tmp_path):
    path = tmp_path / "outcomes.jsonl"
    path.write_text(json.dumps(record(quality=1.0)) + "\n", encoding="utf-8-sig")
    assert [r.prompt for r in read_records(path)] == ["what is 2 + 2?"]


def test_a_one_model_record_refuses_a_misspelt_outcome_key_too():
    with pytest.raises(InvalidFeedbackError, match="unknown key 'latency'; a one-model record has"):
        parse_record({"prompt": "hi", "model": "m/cheap", "quality": 1.0, "latency": 200})
    assert parse_record({"prompt": "hi", "model": "m/cheap", "quality": 1.0, "task": "t"}).outcomes["m/cheap"]


def test_a_record_in_both_shapes_is_refused_rather_than_dropping_one():
    with pytest.raises(InvalidFeedbackError, match="'model' beside 'outcomes'"):
        parse_record({"prompt": "hi", "model": "m/cheap", "quality": 1, "outcomes": {"m/dear": {"quality": 1}}})


def test_a_missing_outcome_file_is_a_typed_error(tmp_path):
    with pytest.raises(InvalidFeedbackError, match="No outcome file"):
        list(read_records(tmp_path / "missing.jsonl"))


@pytest.mark.parametrize("model_map", [["m/cheap"], "m/cheap", {"m/cheap": 1}, {"m/cheap": ""}])
def test_a_model_map_must_map_model_names_to_model_names(model_map):
    with pytest.raises(InvalidFeedbackError, match="model_map must map model names"):
        parse_record(record(quality=1.0)).renamed(model_map)
    assert parse_record(record(quality=1.0)).renamed({"m/cheap": "m/top"}).outcomes["m/top"].quality == 1.0


def test_an_error_names_a_huge_value_cut_short():
    # A 100,000-character quality made a 100 KB error line.
    with pytest.raises(InvalidFeedbackError, match=r"got 'xxx.*\.\.\. \(100,002 characters\)") as caught:
        parse_record(record(quality="x" * 100_000), "f.jsonl:1")
    assert len(str(caught.value)) < 200
    for huge in ({"prompt": "x", "outcomes": {"m" * 100_000: {"quality": "bad"}}},  # a model name
                 {"prompt": "x", "model": "m", "quality": 1.0, "k" * 100_000: 1},  # an unknown key
                 {"prompt": "x", "outcomes": {"m": {"quality": 1.0, "z" * 100_000: 1}}}):  # fmt: skip
        with pytest.raises(InvalidFeedbackError, match=r"\.\.\. \(100,002 characters\)") as caught:
            parse_record(huge, "f.jsonl:1")
        assert len(str(caught.value)) < 300
