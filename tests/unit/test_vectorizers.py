"""The default model's backends: selection, identical identity, agreement with torch, the on-disk export cache."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from redisvl_llmrouter import ConfigError
from redisvl_llmrouter import vectorizers as vz
from redisvl_llmrouter.vectorizers import MiniLMVectorizer, onnx_model_path, vectorizer_identity

pytest.importorskip("onnxruntime")

SENTENCES = [
    "hello, how are you?",
    "explain garbage collection",
    "architect a distributed system for millions of users",
    "Translate 'good morning' to French.",
    "  leading and trailing spaces  ",
    "Ünïcödé café 日本語, emojis 🙂 and tabs\tinside",
]
IDENTITY = {"type": "hf", "model": "sentence-transformers/all-MiniLM-L6-v2", "dims": 384, "dtype": "float32"}


def unit(rows: list[list[float]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float64)


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return unit(MiniLMVectorizer(backend="torch").embed_many(SENTENCES))


@pytest.fixture(scope="module")
def onnx_vectorizer() -> MiniLMVectorizer:
    return MiniLMVectorizer(backend="onnx")


def test_backend_selection(onnx_vectorizer):
    assert onnx_vectorizer.backend == "onnx" and not onnx_vectorizer.quantized
    assert MiniLMVectorizer(backend="torch").backend == "torch"
    assert MiniLMVectorizer().backend == "onnx"  # auto picks ONNX when onnxruntime is importable


def test_auto_falls_back_to_torch_without_onnxruntime(monkeypatch):
    monkeypatch.setattr(vz, "onnx_available", lambda: False)
    assert MiniLMVectorizer(backend="auto").backend == "torch"
    with pytest.raises(ConfigError, match="onnxruntime"):
        MiniLMVectorizer(backend="onnx")
    with pytest.raises(ConfigError, match="quantize=True needs the ONNX backend"):
        MiniLMVectorizer(quantize=True)


@pytest.mark.parametrize("backend", ["tensorflow", "ONNX", "", None])
def test_unknown_backend_is_a_clear_config_error(backend):
    with pytest.raises(ConfigError, match="backend must be one of 'auto', 'torch', 'onnx'") as info:
        MiniLMVectorizer(backend=backend)
    assert isinstance(info.value, ValueError)


def test_quantize_needs_onnx_and_threads_must_be_positive():
    with pytest.raises(ConfigError, match="quantize=True needs the ONNX backend"):
        MiniLMVectorizer(backend="torch", quantize=True)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="threads"):
            MiniLMVectorizer(backend="onnx", threads=bad)


def test_every_backend_has_the_same_identity(onnx_vectorizer):
    for vectorizer in (onnx_vectorizer, MiniLMVectorizer(backend="torch"), MiniLMVectorizer(quantize=True)):
        assert vectorizer_identity(vectorizer) == IDENTITY


def test_onnx_agrees_with_torch(onnx_vectorizer, torch_vectors):
    vectors = unit(onnx_vectorizer.embed_many(SENTENCES))
    assert vectors.shape == (len(SENTENCES), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (vectors * torch_vectors).sum(axis=1).min() >= 0.999


def test_quantized_model_differs_but_stays_close(onnx_vectorizer, torch_vectors):
    int8 = MiniLMVectorizer(quantize=True)
    assert int8.backend == "onnx" and int8.quantized
    assert onnx_model_path(quantize=True) != onnx_model_path()
    vectors = unit(int8.embed_many(SENTENCES))
    fp32 = unit(onnx_vectorizer.embed_many(SENTENCES))
    assert not np.allclose(vectors, fp32, atol=1e-6)
    assert (vectors * torch_vectors).sum(axis=1).min() >= 0.995
    # weight-only blocks: a text's vector does not depend on the rest of its batch
    assert np.abs(unit([int8.embed(t) for t in SENTENCES]) - vectors).max() < 1e-4


def test_embed_many_keeps_the_input_order_across_mixed_lengths(onnx_vectorizer):
    texts = [f"item {i}: " + "word " * (i * 37 % 120) for i in range(24)]  # 0 to ~120 words, shuffled lengths
    texts += ["x " * 600]  # truncated at 256 tokens, like sentence-transformers
    batched = unit(onnx_vectorizer.embed_many(texts, batch_size=8))
    one_by_one = unit([onnx_vectorizer.embed(t) for t in texts])
    assert np.abs(batched - one_by_one).max() < 1e-4
    assert len({tuple(np.round(v, 4)) for v in batched}) == len(texts)


def test_truncation_matches_torch(onnx_vectorizer):
    long_text = "the quick brown fox jumps over the lazy dog " * 80  # far beyond 256 tokens
    torch_vector = unit([MiniLMVectorizer(backend="torch").embed(long_text)])[0]
    assert float(unit([onnx_vectorizer.embed(long_text)])[0] @ torch_vector) >= 0.999


def test_the_model_is_loaded_once_per_process(onnx_vectorizer):
    assert MiniLMVectorizer(backend="onnx")._encoder is onnx_vectorizer._encoder
    assert MiniLMVectorizer(backend="torch")._encoder is MiniLMVectorizer(backend="torch")._encoder


async def test_async_embedding_runs_off_the_event_loop(onnx_vectorizer):
    vector, many = await asyncio.gather(
        onnx_vectorizer.aembed(SENTENCES[0]), onnx_vectorizer.aembed_many(SENTENCES[:3])
    )
    assert np.allclose(vector, many[0], atol=1e-5)


# --------------------------------------------------------------------------- the on-disk model cache
@pytest.fixture
def builds(monkeypatch):
    """Records each real build of an ONNX model (from the packaged weights, about a second each)."""
    calls: list[str] = []
    real_fp32, real_int8 = vz._export_fp32, vz._export_int8

    def export_fp32(source: Path, out: Path) -> None:
        calls.append("fp32")
        real_fp32(source, out)

    def export_int8(source: Path, out: Path) -> None:
        calls.append("int8")
        real_int8(source, out)

    monkeypatch.setattr(vz, "_export_fp32", export_fp32)
    monkeypatch.setattr(vz, "_export_int8", export_int8)
    return calls


def forget(cache_dir: Path) -> None:
    """Drop this process's loaded models from ``cache_dir``, as a new process would start."""
    for key in [k for k in vz._models if isinstance(k, tuple) and k[1].startswith(str(cache_dir))]:
        del vz._models[key]


def test_the_build_happens_once_and_is_reused_from_disk(builds, tmp_path, caplog):
    first = MiniLMVectorizer(backend="onnx", cache_dir=tmp_path)
    path = onnx_model_path(cache_dir=tmp_path)
    assert builds == ["fp32"] and path.is_file() and path.is_relative_to(tmp_path)
    # a new install says what its one slow step is doing and how long it took
    said = [r.getMessage() for r in caplog.records if r.name == vz.__name__]
    assert any(m.startswith("Building the fp32 ONNX embedding model") for m in said)
    assert any(m.startswith("Built the fp32 ONNX embedding model in") for m in said)
    forget(tmp_path)
    second = MiniLMVectorizer(backend="onnx", cache_dir=tmp_path)
    assert builds == ["fp32"]  # loaded from disk, not exported again
    assert second._encoder is not first._encoder
    assert np.allclose(first.embed("hello"), second.embed("hello"))
    # built in a temporary directory and renamed into place: nothing half-written is left behind
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.startswith(".lock")) == ["model.onnx"]


def test_the_quantized_model_has_its_own_cache_file(builds, tmp_path):
    MiniLMVectorizer(quantize=True, cache_dir=tmp_path)
    assert builds == ["int8"]
    assert onnx_model_path(quantize=True, cache_dir=tmp_path).is_file()
    assert not onnx_model_path(cache_dir=tmp_path).exists()
    MiniLMVectorizer(backend="onnx", cache_dir=tmp_path)
    assert builds == ["int8", "fp32"]
    forget(tmp_path)
    MiniLMVectorizer(quantize=True, cache_dir=tmp_path)
    MiniLMVectorizer(backend="onnx", cache_dir=tmp_path)
    assert builds == ["int8", "fp32"]


def test_cache_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMROUTER_CACHE_DIR", str(tmp_path))
    assert onnx_model_path().is_relative_to(tmp_path / "onnx")
    monkeypatch.delenv("LLMROUTER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert onnx_model_path().is_relative_to(tmp_path / "xdg" / "redisvl-llmrouter" / "onnx")


def test_a_damaged_cache_file_is_built_again(builds, tmp_path):
    path = onnx_model_path(cache_dir=tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an onnx model")
    vectorizer = MiniLMVectorizer(backend="onnx", cache_dir=tmp_path)
    assert builds == ["fp32"]
    assert len(vectorizer.embed("hello")) == 384


def test_auto_falls_back_to_torch_when_the_build_fails(monkeypatch, tmp_path):
    def broken(source: Path, out: Path) -> None:
        raise RuntimeError("no exporter here")

    monkeypatch.setattr(vz, "_export_fp32", broken)
    with pytest.warns(RuntimeWarning, match="using torch instead"):
        assert MiniLMVectorizer(cache_dir=tmp_path).backend == "torch"
    with pytest.raises(ConfigError, match="no exporter here"):
        MiniLMVectorizer(backend="onnx", cache_dir=tmp_path)


def test_without_any_backend_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setattr(vz, "onnxruntime_installed", lambda: False)
    monkeypatch.setattr(vz, "onnx_available", lambda: False)
    monkeypatch.setattr(vz, "torch_available", lambda: False)
    with pytest.raises(ConfigError, match=r"redisvl-llmrouter\[onnx\].*redisvl-llmrouter\[torch\]"):
        MiniLMVectorizer(backend="auto")
    # Asked for by name, the torch backend names its own extra only.
    with pytest.raises(ConfigError, match=r"backend='torch' needs .*redisvl-llmrouter\[torch\]'$"):
        MiniLMVectorizer(backend="torch")


def test_onnxruntime_without_a_model_file_names_the_missing_model_not_the_onnx_extra(monkeypatch):
    """A source-tree install with the onnx extra: installing that extra again would not help."""
    assert vz.no_backend_message(onnxruntime=False, bundled=False) == vz._NO_BACKEND
    assert vz.no_backend_message(onnxruntime=True, bundled=True) == vz._NO_BACKEND
    message = vz.no_backend_message(onnxruntime=True, bundled=False)
    assert "model.onnx" in message and "make wheel" in message and "redisvl-llmrouter[torch]" in message
    assert "redisvl-llmrouter[onnx]" not in message
    monkeypatch.setattr(vz, "_bundled", lambda: False)
    monkeypatch.setattr(vz, "onnx_available", lambda: False)  # onnxruntime, but no model and no onnx to build one
    monkeypatch.setattr(vz, "torch_available", lambda: False)
    for backend in ("auto", "onnx"):
        with pytest.raises(ConfigError, match=r"onnxruntime is installed.*model\.onnx.*make wheel"):
            MiniLMVectorizer(backend=backend)


def test_the_onnx_graph_is_built_from_the_weights_without_torch(tmp_path):
    """A fresh process builds and runs the ONNX model from the safetensors file and never imports torch."""
    code = (
        "import sys\n"
        "from redisvl_llmrouter.vectorizers import MiniLMVectorizer\n"
        f"v = MiniLMVectorizer(backend='onnx', cache_dir={str(tmp_path)!r})\n"
        "assert len(v.embed('explain garbage collection')) == 384\n"
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert "Building the fp32 ONNX embedding model" in out.stderr
    assert onnx_model_path(cache_dir=tmp_path).is_file()


def test_a_graph_gives_back_the_weights_it_was_built_from(tmp_path):
    """A wheel carries the fp32 graph, not the checkpoint: its int8 copy is built from the graph's weights."""
    from redisvl_llmrouter import minilm_onnx

    source = vz.model_files_dir()
    carried = tmp_path / "wheel"
    carried.mkdir()
    shutil.copyfile(source / "config.json", carried / "config.json")
    vz._export_fp32(source, carried / "model.onnx")
    checkpoint, recovered = minilm_onnx.read_weights(source), minilm_onnx.read_weights(carried)
    assert recovered.keys() <= checkpoint.keys() and len(recovered) >= 100
    assert all(np.array_equal(recovered[k], checkpoint[k]) for k in recovered)
    vz._export_int8(carried, tmp_path / "from_graph.onnx")
    vz._export_int8(source, tmp_path / "from_checkpoint.onnx")
    assert (tmp_path / "from_graph.onnx").read_bytes() == (tmp_path / "from_checkpoint.onnx").read_bytes()
