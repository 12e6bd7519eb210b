"""The shipped config's confidence is a probability: calibrated on held-out queries, kept through every round trip."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from redisvl_llmrouter import Route, RoutingConfig, pretrained
from redisvl_llmrouter.confidence import expected_calibration_error
from redisvl_llmrouter.schema import ConfidenceCalibration

QUERIES = yaml.safe_load((pretrained.CONFIG_DIR / "default.queries.yaml").read_text())
CHECK_TEXTS = [q for tier in QUERIES["check"].values() for q in tier]
CHECK_LABELS = [t for t, qs in QUERIES["check"].items() for _ in qs]


def test_default_confidence_is_calibrated_within_5_points_on_held_out_queries(api, name):
    """Among check answers given with confidence about p, a share p is right: ECE (10 bins) at most 0.05."""
    router = api.from_pretrained("default", name=name)
    matches = router.route_batch(CHECK_TEXTS, strategy="semantic")
    confidences = [m.confidence for m in matches]
    correct = [m.name == label for m, label in zip(matches, CHECK_LABELS, strict=True)]
    ece = expected_calibration_error(confidences, correct)
    assert ece <= 0.05, f"check-set expected calibration error {ece:.4f}"
    assert all(0.0 <= c <= 1.0 for c in confidences)
    assert all(a.confidence <= m.confidence for m in matches for a in m.alternatives)
    # The figure the config file records is the one measured here, through Redis.
    assert pretrained.read("default").metrics["confidence"]["check_ece"] == round(ece, 4)


def test_an_ordinary_query_gets_a_confidence_that_means_something(api, name):
    router = api.from_pretrained("default", name=name)
    match = router("hello, how are you?")
    assert match.name == "simple" and match.confidence > 0.9
    assert all(a.confidence < match.confidence for a in match.alternatives)
    assert match.confidence + sum(a.confidence for a in match.alternatives) == pytest.approx(1.0)


def test_calibration_survives_redis_dict_yaml_and_export_round_trips(api, name, tmp_path):
    router = api.from_pretrained("default", name=name)
    calibration = router.routing_config.confidence
    assert calibration is not None and calibration.sharpness > 0
    assert api.from_existing(name).routing_config.confidence == calibration
    assert RoutingConfig.model_validate(router.to_dict()["routing_config"]).confidence == calibration
    router.to_yaml(tmp_path / "router.yaml")
    assert yaml.safe_load((tmp_path / "router.yaml").read_text())["routing_config"]["confidence"] == (
        calibration.model_dump(mode="json")
    )
    path = router.export_with_embeddings(tmp_path / "exported.json")
    loaded = api.from_pretrained(str(path), name=name + "-copy")
    assert loaded.routing_config.confidence == calibration
    assert loaded("explain garbage collection").confidence == router("explain garbage collection").confidence


def test_a_config_written_before_calibration_loads_with_the_uncalibrated_confidence(api, name, tmp_path):
    data = json.loads(pretrained.resolve("default").read_text())
    del data["routing_config"]["confidence"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    old = api.from_pretrained(str(path), name=name)
    calibrated = api.from_pretrained("default", name=name + "-new")
    assert old.routing_config.confidence is None
    query = "explain garbage collection"
    match = old(query)
    assert match.name == calibrated(query).name and match.distance == calibrated(query).distance
    assert match.confidence == pytest.approx(1 - match.distance / old.get(match.name).distance_threshold)
    assert all(a.confidence <= match.confidence for a in match.alternatives)


def test_calibrating_a_router_is_a_persisted_config_change_that_never_changes_the_route(api, name, table):
    routes = [
        Route(name="near", model="m/near", references=["near d=0.2"], distance_threshold=0.5),
        Route(name="wide", model="m/wide", references=["wide d=0.3"], distance_threshold=0.9),
    ]
    router = api.create(name=name, routes=routes, vectorizer=table)
    before = router("query")
    assert before.alternatives[0].confidence <= before.confidence  # 0.67 would outrank 0.6 uncalibrated
    config = router.routing_config.model_copy(update={"confidence": ConfidenceCalibration(sharpness=20.0)})
    router.update_routing_config(config)
    after = router("query")
    assert (after.name, after.distance) == (before.name, before.distance)
    assert after.confidence == pytest.approx(1 / (1 + math.exp(-20.0 * 0.1)), abs=1e-3)
    assert api.from_existing(name, vectorizer=table)("query").confidence == pytest.approx(after.confidence)
