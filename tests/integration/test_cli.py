"""The ``llmrouter`` command, in process and through the installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from redisvl_llmrouter.cli import main


@pytest.fixture(autouse=True)
def _shared_redis(redis_url, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)


def test_route_prints_tier_model_confidence_alternatives_and_saving(capsys):
    assert main(["route", "hello, how are you?"]) == 0
    out = capsys.readouterr().out
    assert "tier          simple" in out
    assert "openai/gpt-4.1-nano" in out and "confidence" in out and "alternatives" in out
    assert "saving        98.0% vs always using expert (anthropic/claude-opus-4-5" in out


def test_route_json(capsys):
    assert main(["route", "architect a distributed system for millions of users", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["name"], data["model"]) == ("expert", "anthropic/claude-opus-4-5")
    assert 0 < data["confidence"] <= 1 and data["saving"]["fraction"] == 0.0
    assert {a["name"] for a in data["alternatives"]} <= {"simple", "standard"}


def test_info_describes_the_config(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "sentence-transformers/all-MiniLM-L6-v2 (384 dims" in out
    assert "check_accuracy" in out and "anthropic/claude-sonnet-4-5" in out


def test_export_then_route_with_the_file(tmp_path, capsys):
    path = tmp_path / "mine.json"
    assert main(["export", "default", str(path)]) == 0
    assert json.loads(path.read_text())["routes"][0]["references"][0]["vector"]
    assert main(["route", "explain garbage collection", "--config", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["model"] == "anthropic/claude-sonnet-4-5"


def test_errors_are_one_readable_line_and_exit_2(capsys):
    assert main(["route", "hi", "--config", "no-such-config"]) == 2
    assert (
        "llmrouter: error: No pretrained config named 'no-such-config'; available: default" in capsys.readouterr().err
    )
    assert main(["route", "   "]) == 2
    assert "empty" in capsys.readouterr().err


def test_console_script_help_and_route():
    exe = shutil.which("llmrouter", path=str(Path(sys.executable).parent)) or "llmrouter"
    help_text = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("route", "info", "export", "eval"):
        assert command in help_text
    result = subprocess.run(
        [exe, "route", "hello, how are you?", "--json"], capture_output=True, text=True, check=True, env=os.environ
    )
    assert json.loads(result.stdout)["model"] == "openai/gpt-4.1-nano"


def test_several_queries_are_routed_in_one_batch(capsys):
    assert main(["route", "hello, how are you?", "architect a distributed system for millions of users", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data] == ["simple", "expert"]
