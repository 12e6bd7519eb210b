"""The README's quick start, as written, with the real offline MiniLM model and no Redis started by hand."""

from __future__ import annotations

import asyncio

from redisvl_llmrouter import AsyncSemanticRouter, Route, RoutingConfig, SemanticRouter


def routes() -> list[Route]:
    return [
        Route(name="simple", model="openai/gpt-4.1-nano", cost=0.10, references=["hello", "hi there"], distance_threshold=0.5),
        Route(name="expert", model="anthropic/claude-opus-4-5", cost=5.0, references=["architect a distributed system"], distance_threshold=0.7),
    ]  # fmt: skip


def test_sync_quick_start():
    router = SemanticRouter(name="my-router", routes=routes())
    match = router("hello there")
    assert (match.name, match.model, match.cost) == ("simple", "openai/gpt-4.1-nano", 0.10)
    assert 0 < match.distance < 0.5 and 0 < match.confidence < 1
    assert isinstance(match.alternatives, list)
    assert router("design a scalable distributed database architecture").model == "anthropic/claude-opus-4-5"

    router = SemanticRouter(
        name="cost-router", routes=routes(), routing_config=RoutingConfig(cost_optimization=True, cost_weight=0.3)
    )
    assert router("hello").model == "openai/gpt-4.1-nano"


def test_async_quick_start():
    async def main() -> list:
        arouter = await AsyncSemanticRouter.create(name="async-router", routes=routes())
        match = await arouter("hello")
        many = await asyncio.gather(*(arouter(q) for q in ["hi there", "architect a distributed system"]))
        await arouter.close()
        return [match, *many]

    match, hi, arch = asyncio.run(main())
    assert match.model == hi.model == "openai/gpt-4.1-nano"
    assert arch.model == "anthropic/claude-opus-4-5" and arch.confidence > 0.99
