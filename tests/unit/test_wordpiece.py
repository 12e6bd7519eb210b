"""The plain-Python WordPiece tokenizer gives exactly the ids of the model's Hugging Face tokenizer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from redisvl_llmrouter.vectorizers import MAX_SEQ_LENGTH, model_files_dir
from redisvl_llmrouter.wordpiece import WordPiece

tokenizers = pytest.importorskip("tokenizers")

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("LLMROUTER_OUTCOMES_DIR", ROOT.parent / "shared" / "data" / "routing"))
AWKWARD = [
    "hello, how are you?",
    "  leading and trailing spaces  ",
    "Ünïcödé café 日本語, emojis 🙂 and tabs\tinside",
    "controls\x00 and\ufffd separators\x1c stay out",
    "İstanbul ΣΊΣΥΦΟΣ ﬁ ½ ² Ⅻ naïve—dash…ellipsis «quotes» $5+3=8 ~`|^",
    "a" * 150,  # longer than a word may be: one [UNK]
    "antidisestablishmentarianism pneumonoultramicroscopic",
    "the quick brown fox " * 100,  # truncated to the model's 256 tokens
    "",
]


@pytest.fixture(scope="module")
def both() -> tuple[WordPiece, object]:
    path = model_files_dir() / "tokenizer.json"
    fast = tokenizers.Tokenizer.from_file(str(path))
    fast.no_padding()
    fast.enable_truncation(max_length=MAX_SEQ_LENGTH)
    return WordPiece(path, MAX_SEQ_LENGTH), fast


def shared_prompts() -> list[str]:
    out = []
    for path in sorted(DATA_DIR.glob("*.jsonl")) if DATA_DIR.is_dir() else []:
        with path.open(encoding="utf-8") as handle:
            out += [json.loads(line).get("prompt") or "" for line in handle if line.strip()]
    return out


def test_awkward_texts_tokenize_identically(both):
    plain, fast = both
    for text in AWKWARD:
        assert plain.encode(text.strip()) == fast.encode(text.strip()).ids, text


def test_every_shared_prompt_tokenizes_identically(both):
    prompts = shared_prompts()
    if not prompts:
        pytest.skip(f"no shared data at {DATA_DIR}")
    plain, fast = both
    expected = [e.ids for e in fast.encode_batch([p.strip() for p in prompts])]
    differ = [p[:80] for p, ids in zip(prompts, expected, strict=True) if plain.encode(p.strip()) != ids]
    assert differ == [], f"{len(differ)} of {len(prompts)} differ, e.g. {differ[:3]}"
