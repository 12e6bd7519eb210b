"""Every user error of the ``llmrouter`` command is one line on stderr and exit code 2, with no secret in it.

Each case runs the installed console script in a subprocess, as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from redisvl_llmrouter.embedded import _free_port

EXE = shutil.which("llmrouter", path=str(Path(sys.executable).parent)) or "llmrouter"
MODELS = ["openai/gpt-4.1-nano", "anthropic/claude-sonnet-4-5", "anthropic/claude-opus-4-5"]
#: A Redis URL nothing listens on: a command that reaches Redis fails with "Cannot reach Redis".
DEAD_REDIS = f"redis://127.0.0.1:{_free_port()}"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Outcome files, good and bad, in one directory (the tests run there)."""
    root = tmp_path_factory.mktemp("cli-errors")
    row = {"id": "1", "prompt": "hi", "outcomes": {m: {"quality": 1.0, "cost": 0.001} for m in MODELS}}
    (root / "good.jsonl").write_text(json.dumps(row) + "\n")
    (root / "not-json.jsonl").write_text("this is not JSON\n")
    (root / "empty.jsonl").write_text("")
    (root / "no-outcomes.jsonl").write_text(json.dumps({"id": "1", "prompt": "hi"}) + "\n")
    (root / "latin1.jsonl").write_bytes(b'{"prompt": "caf\xe9"}\n')
    (root / "a-directory").mkdir()
    (root / "dup-ids.jsonl").write_text(json.dumps(row) + "\n" + json.dumps({**row, "prompt": "hello"}) + "\n")
    (root / "null-prompt.jsonl").write_text(json.dumps({**row, "prompt": None}) + "\n")
    (root / "blank-prompt.jsonl").write_text(json.dumps(row) + "\n" + json.dumps({**row, "id": "2", "prompt": " "}))
    return root


def run(
    args: list[str], cwd: Path, redis_url: str | None = None, env_vars: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LLMROUTER_DATA_DIR")}
    env["HF_HUB_OFFLINE"] = "1"
    env.update(env_vars or {})
    if redis_url:
        env["REDIS_URL"] = redis_url
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("llmrouter: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr
    assert result.stdout == ""


BAD_INPUTS = {
    "eval on a non-JSON file": (["eval", "not-json.jsonl"], "not-json.jsonl:1: malformed JSON"),
    "eval on an empty file": (["eval", "empty.jsonl"], "empty.jsonl: no outcome rows"),
    "eval on a file without outcomes": (["eval", "no-outcomes.jsonl"], "missing key 'outcomes'"),
    "eval on a non-UTF-8 file": (["eval", "latin1.jsonl"], "latin1.jsonl is not UTF-8 text"),
    "eval on a directory": (["eval", "a-directory"], "'a-directory' is a directory"),
    "eval on a missing file": (["eval", "missing.jsonl"], "no such file: 'missing.jsonl'"),
    "eval on a device": (["eval", "/dev/null"], "'/dev/null' is not a regular file (a pipe or a device)"),
    "eval --limit 0": (["eval", "good.jsonl", "--limit", "0"], "--limit: must be at least 1, got 0"),
    "eval --limit x": (["eval", "good.jsonl", "--limit", "x"], "--limit: expected a whole number, got 'x'"),
    "eval --cv 1": (["eval", "good.jsonl", "--cv", "1"], "--cv: must be at least 2"),
    "eval --cv K on fewer than K prompts": (["eval", "good.jsonl", "--cv", "2"], "--cv 2: good has only 1 prompt(s)"),
    "eval on a file with an id twice": (
        ["eval", "dup-ids.jsonl"],
        "dup-ids.jsonl:2: id '1' was already used on line 1",
    ),
    "eval on a null prompt": (["eval", "null-prompt.jsonl"], "null-prompt.jsonl:1: 'prompt' must be a string"),
    "eval on a blank prompt": (["eval", "blank-prompt.jsonl"], "blank-prompt.jsonl:2: the prompt is empty"),
    "eval --plot x.txt": (["eval", "good.jsonl", "--plot", "x.txt"], "cannot write a plot as 'x.txt': use one of"),
    "eval --plot in a missing directory": (["eval", "good.jsonl", "--plot", "no/such/dir.png"], "does not exist"),
    "eval --json into a directory": (["eval", "good.jsonl", "--json", "a-directory"], "is a directory"),
    "eval --json over its dataset": (
        ["eval", "good.jsonl", "--json", "./good.jsonl"],
        "'./good.jsonl' is the input file 'good.jsonl': writing there would replace it",
    ),
    "eval --json and --plot to one file": (
        ["eval", "good.jsonl", "--json", "out.png", "--plot", "out.png"],
        "'out.png' is another output of this command ('out.png')",
    ),
    "learn --export over its dataset": (
        ["learn", "good.jsonl", "--router", "default", "--export", "good.jsonl"],
        "'good.jsonl' is the input file 'good.jsonl'",
    ),
    "a repeated --limit": (["eval", "good.jsonl", "--limit", "1", "--limit", "2"], "--limit: given more than once"),
    "a repeated --router": (["eval", "good.jsonl", "--router", "a", "--router", "b"], "--router: given more than once"),
    "a repeated --config": (["route", "hi", "--config", "a", "--config", "b"], "--config: given more than once"),
    "--redis-url before and after": (
        ["--redis-url", DEAD_REDIS, "route", "--redis-url", DEAD_REDIS, "hi"],
        "--redis-url: given more than once",
    ),
    "a malformed Redis URL": (["--redis-url", "notaurl", "route", "hi"], "Invalid Redis URL 'notaurl'"),
    "a Redis URL with a bad port": (
        ["route", "hi", "--redis-url", "redis://alice:S3cretPW@localhost:abc"],
        "Invalid Redis URL 'redis://alice:***@localhost:abc'",
    ),
    "an unknown command": (["rout", "hi"], "invalid choice: 'rout'"),
    "route without text": (["route"], "the following arguments are required: text"),
    "learn on a directory": (["learn", "a-directory", "--router", "default"], "is a directory"),
    "learn without --router": (["learn", "good.jsonl"], "required: --router"),
    "learn on an empty file": (["learn", "empty.jsonl", "--router", "default"], "empty.jsonl: no outcome rows"),
    "learn --router naming a router, with no Redis that outlives a command": (
        ["learn", "good.jsonl", "--router", "my-router"],
        "No router 'my-router' and no shipped config of that name (available: default). No Redis is configured, so "
        "this command started a new, empty embedded Redis: if an earlier command created the router, its Redis "
        "stopped with it. Set LLMROUTER_DATA_DIR",
    ),
    "serve --workers 0": (["serve", "--workers", "0"], "--workers: must be at least 1"),
    "upstream --api-key empty": (["upstream", "--api-key", ""], "argument --api-key: the key is empty"),
    "serve --config naming a directory": (
        ["serve", "--config", "a-directory"],
        "argument --config: 'a-directory' is a directory; give the gateway config file (YAML or JSON)",
    ),
    "serve --upstream that is not a URL": (
        ["serve", "--upstream", "notaurl"],
        "argument --upstream: expected an http:// or https:// base URL such as http://127.0.0.1:8001/v1",
    ),
    "serve on a port out of range": (["serve", "--port", "72001"], "--port must be between 0 and 65535"),
    "upstream on a port out of range": (["upstream", "--port", "-1"], "--port must be between 0 and 65535"),
    "an unknown config": (["info", "--config", "no-such-config"], "No pretrained config named 'no-such-config'"),
    "info --config naming a directory by its bare name": (
        ["info", "--config", "a-directory"],
        "a-directory is a directory (and no shipped config has that name; available: default); pass the path of a "
        "config file in it.",
    ),
    "route --config naming a directory by its bare name": (
        ["route", "hi", "--config", "a-directory"],
        "a-directory is a directory (and no shipped config has that name",
    ),
    "route --config naming a directory by its path": (["route", "hi", "--config", "./a-directory"], "is a directory"),
    "serve --upstream-key-env naming an unset variable": (
        ["serve", "--upstream-key-env", "LLMROUTER_TEST_NO_SUCH_KEY_VARIABLE", "--redis-url", DEAD_REDIS],
        "upstream_api_key_env (--upstream-key-env) names $LLMROUTER_TEST_NO_SUCH_KEY_VARIABLE, which is not set: "
        "set it to the upstream's API key, or leave the option out for an upstream that needs none.",
    ),
    "serve --upstream-key-env given the key itself": (
        ["serve", "--upstream-key-env", "sk-Zz9Secret-123456", "--redis-url", DEAD_REDIS],
        "expected the name of an environment variable (letters, digits and _), not its value",
    ),
    "report on the embedded Redis": (["report"], "no Redis is configured: this command would start a new, empty"),
    "report --since a number too large for a float": (
        ["report", "--since", "9" * 400 + "d", "--redis-url", DEAD_REDIS],
        "the duration is too large to compute",
    ),
    "export --from-redis on the embedded Redis": (
        ["export", "my-router", "out.json", "--from-redis"],
        "no Redis is configured: this command would start a new, empty embedded Redis",
    ),
}


@pytest.mark.parametrize(("args", "expected"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_a_user_error_is_one_line_on_stderr_and_exit_code_2(files, args, expected):
    result = run(args, files)
    assert_one_line_error(result, expected)
    assert "Zz9Secret" not in result.stderr + result.stdout


def test_learn_names_how_to_create_a_router_that_its_redis_does_not_hold(files, redis_url):
    result = run(["learn", "good.jsonl", "--router", "my-router"], files, redis_url=redis_url)
    assert_one_line_error(
        result,
        "No router 'my-router' in this Redis and no shipped config of that name (available: default). To create a "
        "new router, give the config to start from with --router and the new router's name with --name: "
        "--router default --name my-router",
    )


def test_a_serve_option_error_says_llmrouter_once(files):
    result = run(["serve", "--upstream", "notaurl"], files)
    assert_one_line_error(result, "--upstream")
    assert "llmrouter serve:" not in result.stderr and "Value error" not in result.stderr


#: Option combinations eval cannot run as asked, refused from the arguments alone: with an unreachable
#: Redis, a check made after loading the data and the router would report "Cannot reach Redis" instead.
EVAL_OPTIONS_REFUSED_UP_FRONT = {
    "the learned strategy without --learn or --cv": (
        ["eval", "good.jsonl", "--strategy", "semantic", "--strategy", "learned"],
        "The learned strategy needs outcomes to learn from: add --learn TRAIN or --cv K.",
    ),
    "--grid with --cv": (
        ["eval", "good.jsonl", "--cv", "2", "--grid", "3"],
        "--grid 3 sets the tier router's cost_weight sweep; the learned router (--learn, --cv) sweeps a fixed",
    ),
    "--grid with --learn": (
        ["eval", "good.jsonl", "--learn", "good.jsonl", "--grid", "3"],
        "--grid 3 sets the tier router's cost_weight sweep",
    ),
}


@pytest.mark.parametrize(
    ("args", "expected"), EVAL_OPTIONS_REFUSED_UP_FRONT.values(), ids=EVAL_OPTIONS_REFUSED_UP_FRONT.keys()
)
def test_eval_refuses_options_it_would_ignore_or_fail_on_before_any_work(files, args, expected):
    assert_one_line_error(run(args, files, redis_url=DEAD_REDIS), expected)


def test_learn_refuses_a_map_naming_no_model_of_the_data_before_touching_redis(files):
    # A misspelt data model on the left of --map renamed nothing: the data was learned unmapped, exit 0.
    args = ["learn", "good.jsonl", "--router", "default", "--name", "typo-map"]
    result = run([*args, "--map", "opnai/gpt-4.1-nano=openai/gpt-4.1"], files, redis_url=DEAD_REDIS)
    assert_one_line_error(
        result,
        "--map opnai/gpt-4.1-nano=openai/gpt-4.1: 'opnai/gpt-4.1-nano' is not a model of the data; it has "
        "['anthropic/claude-opus-4-5', 'anthropic/claude-sonnet-4-5', 'openai/gpt-4.1-nano']",
    )


def test_a_report_on_a_router_no_gateway_served_says_so(files, redis_url):
    assert_one_line_error(
        run(["report", "--router", "no-such-router"], files, redis_url=redis_url),
        "No router 'no-such-router' and no decisions log",
    )


def test_serve_refuses_a_taken_port_and_an_unpriced_baseline_before_announcing_anything(files, redis_url):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert_one_line_error(run(["serve", "--port", port], files), f"cannot listen on 127.0.0.1:{port}")
    config = files / "baseline.json"
    config.write_text(json.dumps({"router_name": f"bl-{uuid.uuid4().hex[:6]}", "baseline_model": "nope/model"}))
    result = run(["serve", "--config", str(config), "--port", "0"], files, redis_url=redis_url)
    assert_one_line_error(result, "baseline_model 'nope/model' is not a priced model")


def test_a_report_on_a_stored_router_with_no_traffic_yet_is_an_empty_report(files, redis_url):
    from redisvl_llmrouter import SemanticRouter

    router = SemanticRouter.from_pretrained("default", name=f"quiet-{uuid.uuid4().hex[:6]}", redis_url=redis_url)
    try:
        result = run(["report", "--router", router.name], files, redis_url=redis_url)
    finally:
        router.delete()
    assert result.returncode == 0, result.stderr
    assert f"router {router.name}: 0 requests" in result.stdout


def test_learning_unknown_models_names_the_options_and_leaves_no_new_router(files, redis_url):
    import redis

    path = files / "unknown-models.jsonl"
    path.write_text(json.dumps({"prompt": "hi", "outcomes": {"gpt-9": {"quality": 1.0}}}) + "\n")
    result = run(["learn", path.name, "--router", "default", "--name", "cli-unknown-models"], files, redis_url)
    assert_one_line_error(result, "--map DATA_MODEL=MODEL, or add them to the catalog with --add-models")
    assert "gpt-9" in result.stderr
    assert not redis.Redis.from_url(redis_url).exists("cli-unknown-models:route_config")


def test_learn_refuses_a_map_giving_two_models_of_a_prompt_one_name_and_creates_no_router(files, redis_url):
    import redis

    name = f"cli-collide-{uuid.uuid4().hex[:6]}"
    args = ["learn", "good.jsonl", "--router", "default", "--name", name]
    maps = ["--map", "openai/gpt-4.1-nano=openai/gpt-4.1", "--map", "anthropic/claude-sonnet-4-5=openai/gpt-4.1"]
    result = run([*args, *maps], files, redis_url)
    # One line, before any router is made: no progress bar, and no router left for the next try to attach to.
    assert_one_line_error(
        result,
        "--map gives ['anthropic/claude-sonnet-4-5', 'openai/gpt-4.1-nano'] the same name 'openai/gpt-4.1', and "
        "record '1' has an outcome of each: a prompt keeps one outcome per model",
    )
    assert not redis.Redis.from_url(redis_url).exists(f"{name}:route_config")
    # Renaming a data model to another model of the same prompt is the same collision.
    result = run([*args, "--map", "openai/gpt-4.1-nano=anthropic/claude-opus-4-5"], files, redis_url)
    assert_one_line_error(result, "the same name 'anthropic/claude-opus-4-5'")
    assert not redis.Redis.from_url(redis_url).exists(f"{name}:route_config")


def test_two_learns_creating_one_router_at_once_both_land_with_every_model_they_add(tmp_path, redis_url):
    # The second one to create it failed with the library's advice (overwrite=True), and when both got in,
    # the catalog kept only one of the models they added: each replaced the whole catalog.
    from redisvl_llmrouter import SemanticRouter

    name = f"cli-twice-{uuid.uuid4().hex[:6]}"
    for part in ("a", "b"):
        rows = [{"prompt": f"{part} question {i}", "outcomes": {f"new/{part}": {"quality": 1.0}}} for i in range(150)]
        (tmp_path / f"{part}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LLMROUTER_DATA_DIR")}
    env.update(REDIS_URL=redis_url, HF_HUB_OFFLINE="1")
    runs = [
        subprocess.Popen([EXE, "learn", f"{part}.jsonl", "--router", "default", "--name", name, "--add-models"],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for part in ("a", "b")
    ]  # fmt: skip
    errors = [run.communicate(timeout=300)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    router = SemanticRouter.from_existing(name, redis_url=redis_url)
    try:
        assert {"new/a", "new/b"} <= set(router.catalog.names)
        assert router.memory_info().rows == 300
    finally:
        router.delete()


def test_a_learn_terminated_after_creating_its_router_deletes_it_as_ctrl_c_does(tmp_path, redis_url):
    # SIGTERM (timeout, systemd, a closed terminal) killed it where it stood: the half-filled router stayed.
    import signal
    import time

    import redis

    name = f"cli-term-{uuid.uuid4().hex[:6]}"
    rows = [{"prompt": f"question number {i} about topic {i % 97}", "outcomes": {MODELS[0]: {"quality": 1.0}}}
            for i in range(20_000)]  # fmt: skip
    (tmp_path / "big.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LLMROUTER_DATA_DIR")}
    env.update(REDIS_URL=redis_url, HF_HUB_OFFLINE="1")
    args = [EXE, "learn", "big.jsonl", "--router", "default", "--name", name]
    process = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 120
    while not client.exists(f"{name}:route_config") and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert client.exists(f"{name}:route_config"), "the router was never created"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143 and err.rstrip().endswith("llmrouter: terminated") and "Traceback" not in err
    assert list(client.scan_iter(f"{name}:*")) == [] and list(client.scan_iter(f"llmrouter:{{{name}}}:*")) == []


def test_a_failed_learn_never_deletes_a_router_that_was_there_before(files, redis_url):
    from redisvl_llmrouter import SemanticRouter

    path = files / "unknown-for-existing.jsonl"
    path.write_text(json.dumps({"prompt": "hi", "outcomes": {"gpt-9": {"quality": 1.0}}}) + "\n")
    router = SemanticRouter.from_pretrained("default", name=f"kept-{uuid.uuid4().hex[:6]}", redis_url=redis_url)
    try:
        for args in (["--router", router.name], ["--router", "default", "--name", router.name]):
            assert_one_line_error(run(["learn", path.name, *args], files, redis_url), "gpt-9")
            assert SemanticRouter.from_existing(router.name, redis_url=redis_url).route_names == router.route_names
    finally:
        router.delete()


def test_serve_refuses_an_upstream_key_variable_that_is_unset_or_empty_before_starting(files):
    variable = "LLMROUTER_TEST_UPSTREAM_KEY"
    config = files / "upstream-key.yaml"
    config.write_text(f"upstream_url: http://127.0.0.1:1/v1\nupstream_api_key_env: {variable}\n")
    # From the config file as from the option; unset or empty, each said so (DEAD_REDIS: refused before Redis).
    result = run(["serve", "--config", config.name, "--redis-url", DEAD_REDIS], files)
    assert_one_line_error(result, f"upstream_api_key_env (--upstream-key-env) names ${variable}, which is not set")
    result = run(["serve", "--config", config.name, "--redis-url", DEAD_REDIS], files, env_vars={variable: " "})
    assert_one_line_error(result, f"names ${variable}, which is empty")


def test_an_unsupported_plot_format_fails_before_any_routing(files):
    # With an unreachable Redis, a check made after routing would report "Cannot reach Redis" instead.
    result = run(["eval", "good.jsonl", "--plot", "x.txt"], files, redis_url=DEAD_REDIS)
    assert_one_line_error(result, "cannot write a plot as 'x.txt'")


@pytest.mark.parametrize("where", ["before", "after"])
def test_global_options_are_accepted_before_or_after_the_command(files, where):
    args = ["route", "hi"]
    args = ["--redis-url", DEAD_REDIS, *args] if where == "before" else [*args, "--redis-url", DEAD_REDIS]
    # The URL was taken: the command went to that Redis and reports it unreachable.
    assert_one_line_error(run(args, files), f"Cannot reach Redis at 127.0.0.1:{DEAD_REDIS.rsplit(':', 1)[1]}")


def test_report_on_an_unreachable_redis_does_not_advise_the_embedded_redis_it_refuses(files):
    result = run(["report", "--redis-url", DEAD_REDIS], files)
    assert_one_line_error(result, f"Cannot reach Redis at 127.0.0.1:{DEAD_REDIS.rsplit(':', 1)[1]}")
    assert "the URL the gateway printed" in result.stderr and "embedded" not in result.stderr


PASSWORD_LEAKS = {
    "unreachable Redis, URL after the text": ["route", "hello", "--redis-url", "redis://alice:S3cretPW@127.0.0.1:1"],
    "unreachable Redis, URL first": ["--redis-url", "rediss://:S3cretPW@127.0.0.1:1", "route", "hello"],
    "an unrecognized argument next to the URL": ["route", "hello", "--bogus", "redis://alice:S3cretPW@host:6379/0"],
    "a repeated URL": ["route", "hi", "--redis-url", "redis://a:S3cretPW@h", "--redis-url", "redis://a:S3cretPW@h"],
}


@pytest.mark.parametrize("args", PASSWORD_LEAKS.values(), ids=PASSWORD_LEAKS.keys())
def test_a_password_in_a_url_is_never_printed(files, args):
    result = run(args, files)
    assert_one_line_error(result, "llmrouter: error: ")
    assert "S3cretPW" not in result.stderr


BAD_POOL_VARIABLES = {
    "a pool size that is not a number": ("LLMROUTER_REDIS_POOL_SIZE", "abc"),
    "a pool size of 0": ("LLMROUTER_REDIS_POOL_SIZE", "0"),
    "a negative pool timeout": ("LLMROUTER_REDIS_POOL_TIMEOUT", "-1"),
    "a pool timeout that is not a number": ("LLMROUTER_REDIS_POOL_TIMEOUT", "ten"),
}


@pytest.mark.parametrize(("variable", "value"), BAD_POOL_VARIABLES.values(), ids=BAD_POOL_VARIABLES.keys())
def test_a_bad_pool_variable_is_one_line_naming_it(files, variable, value):
    result = run(["route", "hello"], files, env_vars={variable: value})
    assert_one_line_error(result, f"llmrouter: error: {variable}={value!r}: expected ")
