"""Route a few queries through a small tiered router and print tier, model, confidence and alternatives."""

from redisvl_llmrouter import Route, RoutingConfig, SemanticRouter

routes = [
    Route(name="simple", model="openai/gpt-4.1-nano", cost=0.10, distance_threshold=0.6,
          references=["hello", "hi there", "what is the capital of France?", "translate 'thank you' to Spanish"]),
    Route(name="standard", model="anthropic/claude-sonnet-4-5", cost=3.0, distance_threshold=0.6,
          references=["explain how garbage collection works", "debug this python function", "write unit tests"]),
    Route(name="expert", model="anthropic/claude-opus-4-5", cost=5.0, distance_threshold=0.6,
          references=["architect a distributed system for millions of users", "prove this theorem formally"]),
]  # fmt: skip
router = SemanticRouter(
    name="demo-router",
    routes=routes,
    routing_config=RoutingConfig(aggregation_method="min", cost_optimization=True, cost_weight=0.2),
)
# Routes of your own carry no calibrated confidence (the shipped config does: `llmrouter route` above):
# what this prints is the uncalibrated margin 1 - distance / threshold, an ordering, not a probability.
print("own routes, uncalibrated: margin = 1 - distance / threshold (docs/confidence.md)")
for query in ["hey, how are you?", "why does my python loop leak memory?", "design a globally replicated database"]:
    match = router(query)
    alternatives = ", ".join(f"{a.name} ({a.distance:.2f})" for a in match.alternatives) or "none"
    print(
        f"{query!r:45} -> {match.name:9} {match.model:28} "
        f"distance {match.distance:.2f}  margin {match.confidence:.2f}  alternatives: {alternatives}"
    )
router.delete()
