"""The documentation's examples run: every ```python block of README.md and docs/*.md, in order, per file.

Each file runs in a fresh interpreter with its own embedded Redis (``REDIS_URL`` unset), so the
examples see a clean Redis exactly as a reader's first run would. A block whose first line is
``# not run`` is skipped (for example code that needs API keys); everything else must pass.
A page that talks to a local gateway says so in a ``<!-- docs test: runs with ... -->`` line: the
test then starts ``llmrouter upstream`` on port 8001 and ``llmrouter serve`` on 8000, as the page
tells its reader to.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_support import LLMROUTER, launch, stop, wait_ready

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks(path: Path) -> list[str]:
    return [b for b in BLOCK.findall(path.read_text(encoding="utf-8")) if not b.startswith("# not run")]


#: Runs a script the way a notebook cell would: top-level ``await`` is allowed.
RUNNER = """
import ast, asyncio, sys
source = open(sys.argv[1], encoding="utf-8").read()
code = compile(source, sys.argv[1], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
result = eval(code, {"__name__": "__main__"})
if asyncio.iscoroutine(result):
    asyncio.run(result)
"""


@contextlib.contextmanager
def local_gateway(redis_url: str) -> Iterator[None]:
    """The upstream on 8001 and the gateway on 8000, as docs/gateway.md starts them."""
    upstream = launch([LLMROUTER, "upstream", "--port", "8001"])
    gateway = None
    try:
        wait_ready("http://127.0.0.1:8001/v1/models", upstream)
        gateway = launch(
            [LLMROUTER, "serve", "--upstream", "http://127.0.0.1:8001/v1", "--port", "8000"],
            env={**os.environ, "REDIS_URL": redis_url},
        )
        wait_ready("http://127.0.0.1:8000/health", gateway)
        yield
    finally:
        for proc in (gateway, upstream):
            if proc is not None:
                stop(proc)


@pytest.mark.parametrize("path", [p for p in DOCS if blocks(p)], ids=lambda p: p.name)
def test_documentation_examples_run(path, tmp_path, redis_url):
    script = tmp_path / f"{path.stem}_examples.py"
    script.write_text("\n\n".join(blocks(path)), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LLMROUTER_DATA_DIR")}
    env["PYTHONPATH"] = str(ROOT)
    servers = local_gateway(redis_url) if "<!-- docs test: runs with" in path.read_text() else contextlib.nullcontext()
    with servers:
        result = subprocess.run(
            [sys.executable, "-c", RUNNER, str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert result.returncode == 0, f"{path.name} examples failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
