"""Pretrained configs: the shipped default, export/import with embeddings, strict resolution, clear errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from redisvl_llmrouter import (
    ConfigError,
    RouterExistsError,
    VectorizerMismatchError,
    pretrained,
)
from redisvl_llmrouter.vectorizers import MiniLMVectorizer

HEADLINE = {
    "hello, how are you?": "openai/gpt-4.1-nano",
    "explain garbage collection": "anthropic/claude-sonnet-4-5",
    "architect a distributed system for millions of users": "anthropic/claude-opus-4-5",
}
QUERIES = yaml.safe_load((pretrained.CONFIG_DIR / "default.queries.yaml").read_text())


def test_the_headline_queries_route_as_documented(api, name):
    router = api.from_pretrained("default", name=name)
    assert {q: router(q).model for q in HEADLINE} == HEADLINE


def test_held_out_tier_accuracy_is_at_least_85_percent(api, name):
    texts = [q for tier in QUERIES["check"].values() for q in tier]
    labels = [t for t, qs in QUERIES["check"].items() for _ in qs]
    assert len(texts) >= 90 and min(len(qs) for qs in QUERIES["check"].values()) >= 30
    router = api.from_pretrained("default", name=name)
    accuracy = sum(m.name == lab for m, lab in zip(router.route_batch(texts), labels, strict=True)) / len(labels)
    assert accuracy >= 0.85, f"held-out tier accuracy {accuracy:.3f}"


def test_check_queries_are_not_references():
    config = pretrained.read("default")
    references = {ref.text.lower() for route in config.routes for ref in route.references}
    assert all(len(route.references) >= 18 for route in config.routes)
    for split in ("dev", "check"):
        assert not references & {q.lower() for qs in QUERIES[split].values() for q in qs}
        floors = QUERIES["floors"][split]
        written = [q for qs in floors["high_stakes"].values() for q in qs] + floors["ordinary"]
        assert not references & {q.lower() for q in written}


def test_domain_floors_hold_on_held_out_high_stakes_requests_and_spare_ordinary_ones(api, name):
    """At least 95% of high-stakes requests reach the standard tier or above; floors fire on at most 10% of others."""
    floors = QUERIES["floors"]["check"]
    high = [q for qs in floors["high_stakes"].values() for q in qs]
    assert len(high) >= 30 and len(floors["ordinary"]) >= 30
    router = api.from_pretrained("default", name=name)
    above = {"standard", "expert"}
    covered = [m.decision.route in above for m in router.route_batch(high, strategy="semantic")]
    fired = [bool(m.decision.floors) for m in router.route_batch(floors["ordinary"], strategy="semantic")]
    assert sum(covered) / len(covered) >= 0.95, f"{sum(covered)}/{len(covered)} high-stakes requests covered"
    assert sum(fired) / len(fired) <= 0.10, f"floors fired on {sum(fired)}/{len(fired)} ordinary requests"
    # The figures the config file records are the ones measured here.
    recorded = pretrained.read("default").metrics["floors"]
    assert recorded["check_coverage"] == round(sum(covered) / len(covered), 4)
    assert recorded["check_false_rate"] == round(sum(fired) / len(fired), 4)


def test_a_simple_medical_question_is_held_at_the_floor(api, name):
    router = api.from_pretrained("default", name=name)
    match = router("is it ok to take two aspirin with my blood thinner?")
    assert match.decision.floors == ["medical"]
    assert match.model in router.get("standard").models + router.get("expert").models
    casual = router("hello, how are you?")
    assert casual.model == "openai/gpt-4.1-nano" and casual.decision.floors == []


class CountingMiniLM(MiniLMVectorizer):
    """The default model, counting what it is asked to embed."""

    def _embed_many(self, contents, batch_size=64, **kwargs):
        type(self).calls.append(list(contents))
        return super()._embed_many(contents, batch_size, **kwargs)


def test_loading_never_re_embeds_references(api, name):
    CountingMiniLM.calls = []
    router = api.from_pretrained("default", name=name, vectorizer=CountingMiniLM())
    assert CountingMiniLM.calls == []
    router("hello")
    assert CountingMiniLM.calls == [["hello"]]


def test_export_then_import_routes_identically(api, name, tmp_path):
    router = api.from_pretrained("default", name=name)
    router.add_route_references("expert", ["design a zero-knowledge voting protocol and prove it sound"])
    path = router.export_with_embeddings(tmp_path / "my_router.json")
    data = json.loads(path.read_text())
    # No outcome rows, so nothing of schema 3 (their sizes): readable by versions that read schema 2.
    assert data["format"] == "redisvl-llmrouter.pretrained" and data["schema_version"] == 2
    assert data["vectorizer"] == {
        "type": "hf",
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "dims": 384,
        "dtype": "float32",
    }
    assert [(r["name"], r["model"], r["cost"], r["floor"]) for r in data["routes"]] == [
        ("simple", "openai/gpt-4.1-nano", 0.1, None),
        ("standard", "anthropic/claude-sonnet-4-5", 3.0, None),
        ("expert", "anthropic/claude-opus-4-5", 5.0, None),
        *((floor, None, None, {"min_route": "standard", "min_quality": None})
          for floor in ("medical", "legal", "financial", "security")),
    ]  # fmt: skip
    assert data["catalog"]["as_of"] == "2026-11-23" and len(data["catalog"]["models"]) == 7
    loaded = api.from_pretrained(str(path), name=name + "-copy")
    queries = [q for split in ("dev", "check") for qs in QUERIES[split].values() for q in qs]
    before, after = router.route_batch(queries), loaded.route_batch(queries)
    assert [(m.name, m.distance) for m in before] == [(m.name, m.distance) for m in after]
    assert loaded.to_dict()["routes"] == router.to_dict()["routes"]


def test_loading_twice_reuses_and_a_different_config_is_refused(api, name, tmp_path):
    first = api.from_pretrained("default", name=name)
    api.from_pretrained("default", name=name)  # identical: reused, nothing rewritten
    first.add_route_references("simple", ["what's the boiling point of water?"])
    with pytest.raises(RouterExistsError):
        api.from_pretrained("default", name=name)
    assert "what's the boiling point of water?" in api.from_existing(name).get("simple").references
    replaced = api.from_pretrained("default", name=name, overwrite=True)
    assert "what's the boiling point of water?" not in replaced.get("simple").references


def test_a_mismatched_vectorizer_is_refused_with_what_differs(api, name, table):
    with pytest.raises(VectorizerMismatchError, match="dims: stored 384, given 3"):
        api.from_pretrained("default", name=name, vectorizer=table)


def _write(tmp_path: Path, data) -> str:
    path = tmp_path / "bad.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def good_config() -> dict:
    return json.loads(pretrained.resolve("default").read_text())


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda d: "{not json", ConfigError, "not a JSON file"),
        (lambda d: {**d, "format": "something-else"}, ConfigError, "not a redisvl-llmrouter pretrained config"),
        (lambda d: {**d, "schema_version": 99}, ConfigError, "schema_version 99"),
        (lambda d: {k: v for k, v in d.items() if k != "routes"}, ConfigError, "routes"),
        (lambda d: {**d, "routes": [{**d["routes"][0], "cost": -1}]}, ConfigError, "cost"),
        (
            lambda d: {**d, "routes": [{**d["routes"][0], "references": [{"text": "x", "vector": "@@@"}]}]},
            ConfigError,
            "base64",
        ),
        (
            lambda d: {
                **d,
                "routes": [
                    {
                        **d["routes"][0],
                        "references": [{"text": "x", "vector": base64.b64encode(b"\0" * 12).decode()}],
                    }
                ],
            },
            VectorizerMismatchError,
            "3-dimensional vector, but the config declares 384",
        ),
    ],
)
def test_malformed_files_give_clear_errors(api, name, tmp_path, mutate, error, message):
    path = _write(tmp_path, mutate(good_config()))
    with pytest.raises(error, match=message):
        api.from_pretrained(path, name=name)


def test_names_and_paths_never_shadow_each_other(api, name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("default").write_text("not a config")  # a file called like a shipped config is ignored for bare names
    assert api.from_pretrained("default", name=name).route_names[:3] == ["simple", "standard", "expert"]
    with pytest.raises(ConfigError, match="available: default"):
        api.from_pretrained("my_router", name=name)
    with pytest.raises(FileNotFoundError):
        api.from_pretrained("./default.json", name=name)
    assert pretrained.available() == ["default"]
