"""Code written for RedisVL 0.28's ``SemanticRouter`` keeps working after the one-line import switch.

Each test states one RedisVL behaviour its users rely on and runs it against the sync and the
async router (the ``api`` fixture) on the real Redis. The deliberate differences are specified at
the end, with the reason each one stays (see ``docs/coming-from-redisvl.md``).
"""

from __future__ import annotations

import socket

import pytest
import redis
import yaml
from conftest import TableVectorizer
from redisvl.extensions.router import Route as RedisVLRoute
from redisvl.extensions.router import SemanticRouter as RedisVLRouter
from redisvl.index import AsyncSearchIndex, SearchIndex
from redisvl.utils.vectorize import CustomVectorizer

from redisvl_llmrouter import (
    LLMRouterError,
    RedisUnavailableError,
    Route,
    RouterStateLostError,
    RoutingConfig,
    VectorizerMismatchError,
)


def routes() -> list[Route]:
    return [
        Route(name="near", references=["near d=0.1", "near2 d=0.15"], distance_threshold=0.5),
        Route(name="far", references=["far d=0.6"], distance_threshold=0.8),
    ]


def target(router):
    """The router itself (the async router sits inside the test's blocking wrapper)."""
    return getattr(router, "unwrapped", router)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------- what RedisVL users reach for
def test_index_handle_is_a_redisvl_search_index_on_the_same_index_and_client(api, name, table):
    router = api.create(name=name, routes=routes(), vectorizer=table)
    index = router._index
    assert isinstance(index, AsyncSearchIndex if api.flavour == "async" else SearchIndex)
    assert (index.name, index.prefix, index.key_separator) == (name, name, ":")
    assert index.client is target(router)._client
    assert api.run(index.exists())
    assert int(api.run(index.info())["num_docs"]) == 3  # the router's three references, seen through RedisVL
    assert api.run(index.client.info())["redis_version"]  # RedisVL's tests: router._index.client.info()


def test_add_routes_adds_new_routes_and_extends_known_ones(api, name, table):
    router = api.create(name=name, routes=routes(), vectorizer=table)
    router._add_routes(
        [
            Route(name="nearest", references=["nearest d=0.01"], distance_threshold=0.3),
            Route(name="far", references=["far2 d=0.55"]),
        ]
    )
    assert router("query").name == "nearest"
    assert router.get("far").references == ["far d=0.6", "far2 d=0.55"]
    reloaded = api.from_existing(name, vectorizer=table)
    assert reloaded.route_names == ["near", "far", "nearest"]  # persisted, unlike RedisVL's client-side list
    assert reloaded.get("far").references == ["far d=0.6", "far2 d=0.55"]


def test_name_is_settable_for_exports_and_the_stored_router_stays_where_it_is(api, name, table, tmp_path):
    router = api.create(name=name, routes=routes(), vectorizer=table)
    target(router).name = f"{name}-renamed"
    assert router.name == f"{name}-renamed"
    assert router.index_name == name
    path = tmp_path / "router.yaml"
    router.to_yaml(path)
    assert yaml.safe_load(path.read_text())["name"] == f"{name}-renamed"
    assert router("query").name == "near"  # still served from the index it was created with
    assert api.from_existing(name, vectorizer=table).route_names == ["near", "far"]
    copy = api.from_yaml(path, vectorizer=table)  # loading the export stores a copy under the new name
    assert (copy.index_name, copy("query").name) == (f"{name}-renamed", "near")
    with pytest.raises(ValueError, match="Invalid router name"):
        target(router).name = "has space"


def test_create_index_false_attaches_without_writing_and_never_drops_the_index(api, name, table, redis_url):
    owner = api.create(name=name, routes=routes(), vectorizer=table)
    client = redis.Redis.from_url(redis_url)
    config_before = client.json().get(f"{name}:route_config")
    guest = api.create(name=name, routes=routes(), vectorizer=table, create_index=False)
    assert guest("query").name == "near"
    assert client.json().get(f"{name}:route_config") == config_before
    with pytest.raises(ValueError, match="create_index=False"):
        guest.delete()
    assert owner("query").name == "near"
    with pytest.raises(ValueError, match="contradict"):
        api.create(name=name, routes=routes(), vectorizer=table, create_index=False, overwrite=True)
    ghost = f"{name}-ghost"
    unowned = api.create(name=ghost, routes=routes(), vectorizer=table, create_index=False)
    assert client.keys(f"{ghost}*") == []  # no command was issued for an index it does not own
    # Nor is the missing index created behind the caller's back when a call needs it: a typed error says so.
    with pytest.raises(RouterStateLostError, match="create_index=False"):
        unowned("query")
    assert client.keys(f"{ghost}*") == [] and ghost.encode() not in client.execute_command("FT._LIST")
    client.close()


def test_router_stored_by_redisvl_is_attached_with_from_existing(api, name, table, redis_url):
    theirs = RedisVLRouter(
        name=name,
        routes=[RedisVLRoute(name="near", references=["near d=0.1"], distance_threshold=0.5)],
        vectorizer=table,
        redis_url=redis_url,
    )
    try:
        ours = api.from_existing(name, vectorizer=table)
        assert ours.route_names == ["near"]
        match = ours("query")
        assert match.name == "near"
        assert match.distance == pytest.approx(0.1, abs=1e-5)
    finally:
        theirs.delete()


def float16(vectorizer_dtype: str = "float16") -> CustomVectorizer:
    return CustomVectorizer(
        embed=TableVectorizer.vector,
        embed_many=lambda texts, **_: [TableVectorizer.vector(t) for t in texts],
        dtype=vectorizer_dtype,
    )


def test_a_float16_router_stored_by_redisvl_attaches_with_its_vectorizer(api, name, table, redis_url):
    # RedisVL stores only the vectorizer's type and model; the index's schema says its vectors are float16.
    theirs = RedisVLRouter(
        name=name,
        routes=[RedisVLRoute(name="near", references=["near d=0.1"], distance_threshold=0.5)],
        vectorizer=float16(),
        redis_url=redis_url,
    )
    try:
        ours = api.from_existing(name, vectorizer=float16())
        match = ours("query")
        assert (match.name, match.distance) == ("near", pytest.approx(0.1, abs=0.01))
        with pytest.raises(VectorizerMismatchError, match="holds 3-dimensional float16 vectors.*dtype='float16'"):
            api.from_existing(name, vectorizer=table)  # float32: refused here, not by the first query
    finally:
        theirs.delete()


def test_a_float16_router_stored_by_redisvl_attaches_without_a_vectorizer(api, name, redis_url):
    from redisvl_llmrouter import MiniLMVectorizer

    theirs = RedisVLRouter(
        name=name,
        routes=[RedisVLRoute(name="greeting", references=["hello", "hi"], distance_threshold=0.3)],
        vectorizer=MiniLMVectorizer(dtype="float16"),
        redis_url=redis_url,
    )
    try:
        ours = api.from_existing(name)  # the packaged MiniLM, at the index's dtype
        assert ours.vectorizer.dtype == "float16"
        assert ours("hello").name == "greeting"
    finally:
        theirs.delete()


# ----------------------------------------------------------------- deprecated arguments, RedisVL's warnings
def test_dtype_argument_is_deprecated_and_sets_the_default_vectorizers_dtype(api, name):
    with pytest.warns(DeprecationWarning, match="Argument dtype is deprecated"):
        router = api.create(name=name, routes=[Route(name="greeting", references=["hello", "hi"])], dtype="float16")
    assert router.vectorizer.dtype == "float16"
    assert router("hello").name == "greeting"


def test_dtype_argument_must_agree_with_a_given_vectorizer(api, name, table):
    with pytest.warns(DeprecationWarning), pytest.raises(VectorizerMismatchError, match="does not match"):
        api.create(name=name, routes=routes(), vectorizer=table, dtype="float16")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_every_redis_vector_dtype_routes(api, name, dtype):
    vectorizer = CustomVectorizer(
        embed=TableVectorizer.vector,
        embed_many=lambda texts, **_: [TableVectorizer.vector(t) for t in texts],
        dtype=dtype,
    )
    router = api.create(name=name, routes=routes(), vectorizer=vectorizer)
    match = router("query")
    assert match.name == "near"
    assert match.distance == pytest.approx(0.125, abs=0.01)  # avg of 0.1 and 0.15, at the dtype's precision
    assert router._index.schema.fields["vector"].attrs.datatype.value == dtype.upper()


def test_distance_threshold_argument_is_deprecated_and_ignored(api, name, table):
    router = api.create(name=name, routes=routes(), vectorizer=table)
    with pytest.warns(DeprecationWarning, match="Argument distance_threshold is deprecated"):
        assert router("query", distance_threshold=0.01).name == "near"  # the route thresholds decide
    with pytest.warns(DeprecationWarning):
        matches = router.route_many("query", None, 2, 0.01)  # RedisVL's positional order
    assert [m.name for m in matches] == ["near", "far"]


def test_routing_config_distance_threshold_is_deprecated_and_dropped():
    with pytest.warns(DeprecationWarning, match="distance_threshold"):
        config = RoutingConfig(distance_threshold=0.3, max_k=2)
    assert config.max_k == 2 and "distance_threshold" not in config.model_dump()


# ----------------------------------------------------------------- errors RedisVL's except clauses catch
def test_unreachable_redis_is_a_redis_connection_error(api, name, table):
    with pytest.raises(redis.exceptions.ConnectionError) as caught:
        api.create(name=name, routes=routes(), vectorizer=table, redis_url=f"redis://127.0.0.1:{free_port()}")
    assert isinstance(caught.value, RedisUnavailableError)
    assert isinstance(caught.value, ConnectionError)  # the builtin, as before


def test_a_non_vectorizer_is_a_type_error(api, name):
    with pytest.raises(TypeError) as caught:
        api.create(name=name, routes=routes(), vectorizer="invalid_vectorizer")
    assert isinstance(caught.value, LLMRouterError)


def test_bad_input_and_definitions_are_value_errors(api, name, table):
    router = api.create(name=name, routes=routes(), vectorizer=table)
    for call in (
        lambda: router(),  # neither statement nor vector
        lambda: router.add_route(Route(name="near", references=["x d=0.3"])),
        lambda: router.add_route_references("ghost", ["x d=0.3"]),
        lambda: router.get_route_references(),
        lambda: router.get_route_references(reference_ids=[""]),
        lambda: api.from_existing(f"{name}-missing", vectorizer=table),
        lambda: api.from_dict({"name": name, "routes": [], "vectorizer": {"type": "nope", "model": "nope"}}),
    ):
        with pytest.raises(ValueError):
            call()


def test_remove_route_of_an_unknown_name_warns_and_changes_nothing(api, name, table, caplog):
    router = api.create(name=name, routes=routes(), vectorizer=table)
    router.remove_route("unknown_route")
    assert "'unknown_route' is not found" in caplog.text
    assert router.route_names == ["near", "far"]


# ----------------------------------------------------------------- deliberate differences (documented)
def test_a_route_keeps_its_last_reference_because_redisvl_cannot_load_a_route_without_one(api, name, table):
    router = api.create(name=name, routes=routes(), vectorizer=table)
    with pytest.raises(ValueError, match="remove_route"):
        router.delete_route_references(route_name="far")
    assert router.get("far").references == ["far d=0.6"]
    with pytest.raises(ValueError, match="References must not be empty"):
        RedisVLRoute(name="far", references=[])  # what RedisVL's from_dict would meet in the stored config


def test_an_all_zero_vector_is_refused_instead_of_routing_nowhere(api, name, table):
    router = api.create(name=name, routes=routes(), vectorizer=table)
    with pytest.raises(ValueError, match="all zeros"):
        router(vector=[0.0, 0.0, 0.0])
