"""Run RedisVL's own semantic-router tests against redisvl-llmrouter, with only the imports switched.

    python scripts/check_redisvl_compat.py /tmp/redisvl_tests/test_semantic_router.py
    python scripts/check_redisvl_compat.py PATH --min-passed 34 --json out.json -- -x -k add_route

``PATH`` is RedisVL 0.28's ``tests/integration/test_semantic_router.py`` (from the ``redisvl``
0.28.0 sdist, ``pip download redisvl==0.28.0 --no-deps --no-binary redisvl``, or the
``redis/redis-vl-python`` repository). It is not part of this repository: RedisVL's test code is
theirs, so this script copies it into a temporary directory and changes nothing in it but the
imports of ``SemanticRouter``, ``Route``, ``RoutingConfig`` and ``DistanceAggregationMethod``
(``redisvl.extensions.router[.schema]`` -> ``redisvl_llmrouter``).

RedisVL's ``tests/conftest.py`` starts Docker Compose and downloads models; it is replaced by a
small conftest of ours with the same fixture names: ``redis_url`` is the Redis this package
resolves (``REDIS_URL`` or the embedded Redis 8.2 with search and JSON), ``client`` a client on
it, ``hf_vectorizer`` / ``hf_vectorizer_float16`` the packaged all-MiniLM-L6-v2 (offline), and
the two skip helpers the test module imports. Prints passed/failed/skipped per test and the total;
exits 1 when fewer than ``--min-passed`` tests pass.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

#: The only edits made to RedisVL's test module: where the router classes are imported from.
IMPORT_SWITCHES = [
    (re.compile(r"^from redisvl\.extensions\.router\.schema import", re.M), "from redisvl_llmrouter import"),
    (re.compile(r"^from redisvl\.extensions\.router import", re.M), "from redisvl_llmrouter import"),
]

#: Stands in for RedisVL's tests/conftest.py (which needs Docker and model downloads): the same
#: fixture names, backed by this package's Redis resolution and packaged model.
CONFTEST = '''\
"""Fixtures RedisVL's router tests expect, on the embedded Redis and the packaged MiniLM."""

import hashlib
import os
import re

import pytest
import redis
from redisvl.redis.connection import is_version_gte

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_configure(config):
    config.addinivalue_line("markers", "requires_hf: needs a HuggingFace model (here: the packaged MiniLM)")


@pytest.fixture(scope="session")
def redis_url():
    from redisvl_llmrouter.connection import resolve_url

    return resolve_url()


@pytest.fixture
def client(redis_url):
    conn = redis.Redis.from_url(redis_url)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def hf_vectorizer():
    from redisvl_llmrouter import MiniLMVectorizer

    return MiniLMVectorizer()


@pytest.fixture(scope="session")
def hf_vectorizer_float16():
    from redisvl_llmrouter import MiniLMVectorizer

    return MiniLMVectorizer(dtype="float16")


@pytest.fixture
def redis_test_name(request):
    node_hash = hashlib.sha1(request.node.nodeid.encode("utf-8")).hexdigest()[:10]

    def make_name(base):
        slug = re.sub(r"[^0-9A-Za-z]+", "_", base).strip("_").lower()
        return f"{slug or 'redis_resource'}_master_{node_hash}"

    return make_name


def skip_if_no_redis_search(client, message=None):
    modules = {m[b"name"].decode().lower() for m in client.module_list()}
    if not modules & {"search", "searchlight", "ft"}:
        pytest.skip(message or "Redis Search module not available")


def skip_if_redis_version_below(client, min_version, message=None):
    version = client.info()["redis_version"]
    if not is_version_gte(version, min_version):
        pytest.skip(message or f"Redis version {version} < {min_version} required")
'''


def switch_imports(source: str) -> str:
    """RedisVL's test module with its router imports pointing at ``redisvl_llmrouter``; nothing else changes."""
    for pattern, replacement in IMPORT_SWITCHES:
        source, count = pattern.subn(replacement, source)
        if count != 1:
            raise SystemExit(f"Expected one {pattern.pattern!r} import in the test module, found {count}.")
    return source


def build_tree(test_file: Path, root: Path) -> Path:
    """Lay out ``root`` like RedisVL's repository (``tests/integration``, ``schemas``); returns the module."""
    integration = root / "tests" / "integration"
    integration.mkdir(parents=True)
    (root / "schemas").mkdir()  # test_to_yaml writes ../../schemas/semantic_router.yaml
    (root / "tests" / "__init__.py").write_text("")
    (root / "tests" / "conftest.py").write_text(CONFTEST)
    module = integration / "test_semantic_router.py"
    module.write_text(switch_imports(test_file.read_text(encoding="utf-8")), encoding="utf-8")
    return module


def outcomes(junit_xml: Path) -> dict[str, str]:
    """``{test name: passed | failed | skipped}`` from pytest's JUnit report."""
    results: dict[str, str] = {}
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            results[case.get("name", "?")] = "skipped"
        elif case.find("failure") is not None or case.find("error") is not None:
            results[case.get("name", "?")] = "failed"
        else:
            results[case.get("name", "?")] = "passed"
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("test_file", type=Path, help="RedisVL's tests/integration/test_semantic_router.py")
    parser.add_argument("--min-passed", type=int, default=34, help="exit 1 below this many passed tests")
    parser.add_argument("--json", type=Path, help="also write the per-test outcomes here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary tree (its path is printed)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    if not args.test_file.is_file():
        parser.error(f"no such file: {args.test_file}")

    root = Path(tempfile.mkdtemp(prefix="redisvl-compat-"))
    module = build_tree(args.test_file, root)
    report = root / "junit.xml"
    command = [sys.executable, "-m", "pytest", str(module), "-q", "-rfEs", "-p", "no:cacheprovider"]
    command += [f"--rootdir={root}", f"--junitxml={report}", "-o", "junit_family=xunit1", *args.pytest_args]
    subprocess.run(command, cwd=root, check=False)
    if not report.exists():
        print("pytest produced no report", file=sys.stderr)
        return 2

    results = outcomes(report)
    passed = sum(1 for outcome in results.values() if outcome == "passed")
    print()
    for test, outcome in results.items():
        if outcome != "passed":
            print(f"{outcome:8s} {test}")
    print(f"RedisVL 0.28 semantic router tests on redisvl-llmrouter: {passed}/{len(results)} passed")
    if args.json:
        args.json.write_text(json.dumps({"passed": passed, "total": len(results), "tests": results}, indent=2))
    if args.keep:
        print(f"tree kept at {root}")
    else:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0 if passed >= args.min_passed else 1


if __name__ == "__main__":
    sys.exit(main())
