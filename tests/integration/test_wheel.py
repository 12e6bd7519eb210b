"""The built wheel, installed into a fresh virtualenv, ships the pretrained configs and works.

Two installs: ``[embedded,torch]`` (the reference pipeline, sentence-transformers on torch) and
the torch-free ``[embedded,onnx]``, which must stay small and route with the ONNX model and the
tokenizer the wheel carries.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROUTE_DEFAULT = (
    "import redisvl_llmrouter, sys\n"
    "assert 'site-packages' in redisvl_llmrouter.__file__, redisvl_llmrouter.__file__\n"
    "from redisvl_llmrouter import SemanticRouter\n"
    "r = SemanticRouter.from_pretrained('default')\n"
    "print(r('explain garbage collection').model, r.vectorizer.backend)\n"
    "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))\n"
)
#: The torch-free install's budget (the issue's bound); the full install with torch is 1.8 to 2.1 GB.
TORCH_FREE_MB = 500


def build_wheel(tmp_path: Path) -> Path:
    """The wheel as the project's tooling builds it (in this environment, so it bundles the model files)."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True,
    )
    (wheel,) = dist.glob("redisvl_llmrouter-*.whl")
    return wheel


def fresh_venv(tmp_path: Path, requirement: str) -> Path:
    """A new virtualenv with ``requirement`` installed (pinned like the dev install); returns its directory."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), requirement],
        check=True,
        timeout=900,
    )
    return venv


def run_outside_the_repo(venv: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # the wheel's own embedded Redis
    env["LLMROUTER_CACHE_DIR"] = str(tmp_path / "cache")  # a new machine: nothing built yet
    return subprocess.run(list(args), capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)


def size_mb(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_loads_the_default_config(tmp_path):
    venv = fresh_venv(tmp_path, f"{build_wheel(tmp_path)}[embedded,torch]")
    out = run_outside_the_repo(venv, tmp_path, str(venv / "bin" / "python"), "-c", ROUTE_DEFAULT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split()[0] == "anthropic/claude-sonnet-4-5"
    cli = run_outside_the_repo(venv, tmp_path, str(venv / "bin" / "llmrouter"), "route", "hello, how are you?")
    assert cli.returncode == 0 and "openai/gpt-4.1-nano" in cli.stdout, cli.stderr


@pytest.mark.slow
def test_the_torch_free_install_is_small_and_routes(tmp_path):
    wheel = build_wheel(tmp_path)
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "empty")], check=True)
    empty_venv_mb = size_mb(tmp_path / "empty")  # pip and setuptools come with every venv: not the install
    venv = fresh_venv(tmp_path, f"{wheel}[embedded,onnx]")
    python = str(venv / "bin" / "python")
    missing = subprocess.run(
        [python, "-c", "import importlib.util as u; print([m for m in ('torch', 'sentence_transformers') if u.find_spec(m)])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert missing.stdout.strip() == "[]"
    installed = size_mb(venv) - empty_venv_mb
    print(f"torch-free install: {installed:.0f} MB (wheel {wheel.stat().st_size / 2**20:.0f} MB)")
    assert installed < TORCH_FREE_MB, f"{installed:.0f} MB installed"

    first = run_outside_the_repo(venv, tmp_path, python, "-c", ROUTE_DEFAULT)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["anthropic/claude-sonnet-4-5 onnx", "[]"]
    # the wheel carries the ready ONNX model: the first use builds nothing and has nothing to say
    assert "Building" not in first.stderr and not (tmp_path / "cache").exists(), first.stderr
    cli = run_outside_the_repo(venv, tmp_path, str(venv / "bin" / "llmrouter"), "route", "hello, how are you?")
    assert cli.returncode == 0 and "openai/gpt-4.1-nano" in cli.stdout, cli.stderr
    # Asked for by name, the backend this install lacks names its own extra (it said "[onnx] or [torch]").
    torch = run_outside_the_repo(
        venv,
        tmp_path,
        python,
        "-c",
        "from redisvl_llmrouter.vectorizers import MiniLMVectorizer as M; M(backend='torch')",
    )
    assert torch.returncode == 1 and "backend='torch' needs" in torch.stderr and "[onnx]" not in torch.stderr


def test_a_wheel_built_without_the_model_never_ships_an_earlier_build_s_copy(tmp_path):
    """``build/`` outlives a build: a second build without the weights warned that it had no model, yet
    shipped the first build's ``model.onnx`` from ``build/lib``."""
    import shutil
    import zipfile

    source = tmp_path / "source"
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "tests")
    )
    no_model = tmp_path / "no-model"
    no_model.mkdir()
    contents = []
    for run, env in enumerate([{}, {"LLMROUTER_MODEL_DIR": str(no_model)}]):
        dist = tmp_path / f"dist{run}"
        build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist)]
        subprocess.run([*build, str(source)], check=True, env={**os.environ, **env}, capture_output=True)
        (wheel,) = dist.glob("redisvl_llmrouter-*.whl")
        contents.append({n for n in zipfile.ZipFile(wheel).namelist() if "/minilm/" in n})
    assert "redisvl_llmrouter/minilm/model.onnx" in contents[0]
    assert contents[1] == set()
