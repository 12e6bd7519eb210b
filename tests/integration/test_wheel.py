"""The built wheel, installed into a fresh virtualenv, ships the pretrained configs and works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_loads_the_default_config(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True,
    )
    (wheel,) = dist.glob("redisvl_llmrouter-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), f"{wheel}[embedded]"],
        check=True,
        timeout=900,
    )
    code = (
        "import redisvl_llmrouter, sys\n"
        "assert 'site-packages' in redisvl_llmrouter.__file__, redisvl_llmrouter.__file__\n"
        "from redisvl_llmrouter import SemanticRouter\n"
        "r = SemanticRouter.from_pretrained('default')\n"
        "print(r('explain garbage collection').model)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # the wheel's own embedded Redis
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "anthropic/claude-sonnet-4-5"
    cli = subprocess.run(
        [str(venv / "bin" / "llmrouter"), "route", "hello, how are you?"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert cli.returncode == 0 and "openai/gpt-4.1-nano" in cli.stdout, cli.stderr
