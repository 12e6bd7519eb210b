"""The documentation's examples run: every ```python block of README.md and docs/*.md, in order, per file.

Each file runs in a fresh interpreter with its own embedded Redis (``REDIS_URL`` unset), so the
examples see a clean Redis exactly as a reader's first run would. A block whose first line is
``# not run`` is skipped (for example code that needs API keys); everything else must pass.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("path", [p for p in DOCS if blocks(p)], ids=lambda p: p.name)
def test_documentation_examples_run(path, tmp_path):
    script = tmp_path / f"{path.stem}_examples.py"
    script.write_text("\n\n".join(blocks(path)), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LLMROUTER_DATA_DIR")}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{path.name} examples failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
