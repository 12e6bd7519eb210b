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


def test_onnxruntime_telemetry_stays_off_so_nothing_is_sent_to_microsoft(tmp_path):
    # onnxruntime 1.29+ on Linux looked up mobile.events.data.microsoft.com a few seconds into a session
    # and kept a device id under $XDG_CACHE_HOME/Microsoft; that id file is the trace checked here.
    import os
    import subprocess
    import sys

    from redisvl_llmrouter.vectorizers import onnx_cache_dir

    env = {k: v for k, v in os.environ.items() if not k.startswith("ORT_")}
    env.update(XDG_CACHE_HOME=str(tmp_path), LLMROUTER_CACHE_DIR=str(onnx_cache_dir().parent))  # the model as built
    code = "from redisvl_llmrouter import MiniLMVectorizer; MiniLMVectorizer(backend='onnx').embed('hello')"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert not (tmp_path / "Microsoft").exists()
