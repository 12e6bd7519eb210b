"""The outcome memory's layout and reply parsing (pure): keys, packing, KNN replies, running sums."""

from __future__ import annotations

import math

import numpy as np

from redisvl_llmrouter.learning import memory
from redisvl_llmrouter.learning.memory import Observation


def test_every_key_of_a_router_shares_its_hash_tag_and_stays_out_of_the_route_index():
    keys = [memory.row_key("r1", "x"), memory.stats_key("r1"), memory.order_key("r1"), memory.models_key("r1"),
            memory.request_key("r1", "req-1")]  # fmt: skip
    assert all(k.startswith("llmrouter:{r1}:") for k in keys)
    assert not any(k.startswith("r1:") for k in keys)  # the route index covers the prefix "r1:"
    assert memory.index_name("r1") == "r1:outcomes"


def test_outcomes_pack_as_hex_float32_triples():
    values = np.array([[1.0, 0.25, np.nan], [np.nan, np.nan, 30.0]])
    packed = memory.encode_outcomes(values)
    assert len(packed) == 2 * 3 * 8
    back = memory.decode_outcomes(packed)
    assert back.shape == (2, 3) and back[0, 1] == 0.25 and np.isnan(back[1, 0])


def test_parse_neighbours_pads_rows_written_before_a_model_joined():
    full = memory.encode_outcomes(np.array([[1.0, 0.1, np.nan], [0.0, 0.2, np.nan]]))
    short = memory.encode_outcomes(np.array([[0.5, np.nan, np.nan]]))
    reply = [2, b"k1", [b"distance", b"0.1", b"o", full.encode()], b"k2", [b"distance", b"0.3", b"o", short.encode()]]
    nb = memory.parse_neighbours(reply, models=2)
    assert nb.distances.tolist() == [0.1, 0.3]
    assert nb.values.shape == (2, 2, 3)
    assert nb.values[1, 0, 0] == 0.5 and np.isnan(nb.values[1, 1, 0])


def test_parse_neighbours_skips_rows_missing_a_field_and_reads_resp3():
    packed = memory.encode_outcomes(np.array([[1.0, np.nan, np.nan]]))
    resp3 = {"results": [{"extra_attributes": {"distance": "0.2", "o": packed}}, {"extra_attributes": {"o": packed}}]}
    nb = memory.parse_neighbours(resp3, models=1)
    assert len(nb) == 1 and nb.distances.tolist() == [0.2]


def test_running_sums_give_means_and_ignore_foreign_fields():
    s = memory.parse_stats([b"n:a", b"2", b"q:a", b"1.5", b"nc:a", b"1", b"c:a", b"0.002", b"junk", b"x"])
    assert s.mean_quality("a") == 0.75 and s.mean_cost("a") == 0.002
    assert s.mean_quality("b") is None and s.observations == 2


def test_upsert_arguments_carry_unknown_values_as_empty_strings():
    args = memory.upsert_args("r", "row", [Observation("m", 1.0, None, 12.5)], now_ms=5, max_rows=10, vector=b"v")
    numkeys, *rest = args
    assert numkeys == 4 and rest[:4] == [memory.row_key("r", "row"), memory.stats_key("r"), memory.order_key("r"),
                                          memory.models_key("r")]  # fmt: skip
    assert rest[-4:] == ["m", "1.0", "", "12.5"]


def test_row_ids_for_text_are_stable_and_distinct():
    assert memory.row_id_for_text("a") == memory.row_id_for_text("a") != memory.row_id_for_text("b")
    assert not math.isnan(len(memory.row_id_for_text("\ud800")))  # lone surrogates hash too
