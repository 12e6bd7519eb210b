"""Backends are interchangeable in a real router: vectors made with torch route ONNX queries, and back."""

from __future__ import annotations

import pytest

from redisvl_llmrouter import pretrained
from redisvl_llmrouter.vectorizers import MiniLMVectorizer

pytest.importorskip("onnxruntime")

HEADLINE = {
    "hello, how are you?": "simple",
    "explain garbage collection": "standard",
    "architect a distributed system for millions of users": "expert",
}


def test_a_router_built_with_torch_is_used_with_onnx(api, name):
    definition = pretrained.read("default").definition()
    built = api.create(  # embeds the references with torch
        name=name,
        routes=definition.routes,
        routing_config=definition.routing_config,
        vectorizer=MiniLMVectorizer(backend="torch"),
    )
    assert built.vectorizer.backend == "torch"
    attached = api.from_existing(name)  # the stored identity builds the default backend: ONNX here
    assert attached.vectorizer.backend == "onnx"
    assert {q: attached(q).name for q in HEADLINE} == HEADLINE
    assert attached.to_dict()["vectorizer"] == built.to_dict()["vectorizer"]


def test_every_backend_routes_the_headline_queries_alike(api, name):
    for vectorizer in (MiniLMVectorizer(backend="torch"), MiniLMVectorizer(backend="onnx")):
        router = api.from_pretrained("default", name=name, vectorizer=vectorizer)
        assert [m.name for m in router.route_batch(list(HEADLINE))] == list(HEADLINE.values())
        assert {q: router(q).name for q in HEADLINE} == HEADLINE
