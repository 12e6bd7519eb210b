"""BERT's uncased WordPiece tokenizer in plain Python, for installs without ``tokenizers``.

``tokenizers`` pulls ``huggingface_hub`` and its own dependencies (about 40 MB), which the
torch-free install cannot afford within its size budget. This is the same pipeline as the
model's ``tokenizer.json`` (``BertNormalizer`` with lowercasing, ``BertPreTokenizer``,
``WordPiece`` with ``##`` continuations, ``[CLS] ... [SEP]`` truncated to the model's length),
written after Hugging Face's implementation; tests/unit/test_wordpiece.py checks that it gives the
same ids on every shared prompt. When ``tokenizers`` is installed the vectorizer uses it (faster).
"""

from __future__ import annotations

import json
import unicodedata
from functools import lru_cache
from pathlib import Path

__all__ = ["WordPiece"]

# Rust's char::is_whitespace (the Unicode White_Space property), which Hugging Face uses.
_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_CJK = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)  # fmt: skip


def _is_control(char: str) -> bool:
    return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


def _is_punctuation(char: str) -> bool:
    return (char.isascii() and not char.isalnum() and char.isprintable() and char != " ") or unicodedata.category(
        char
    ).startswith("P")


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK)


@lru_cache(maxsize=4096)
def _normalize_char(char: str) -> str:
    """One character through clean-text, CJK spacing, accent stripping and lowercasing."""
    if char in ("\x00", "\ufffd") or _is_control(char):
        return ""
    if char in _WHITESPACE:
        return " "
    if _is_cjk(char):
        return f" {char} "
    stripped = "".join(c for c in unicodedata.normalize("NFD", char) if unicodedata.category(c) != "Mn")
    return stripped.lower()


def _words(text: str) -> list[str]:
    """Whitespace-separated pieces, with every punctuation character a word of its own."""
    words: list[str] = []
    for chunk in "".join(_normalize_char(c) for c in text).split(" "):
        start = 0
        for i, char in enumerate(chunk):
            if _is_punctuation(char):
                if start < i:
                    words.append(chunk[start:i])
                words.append(char)
                start = i + 1
        if start < len(chunk):
            words.append(chunk[start:])
    return words


class WordPiece:
    """Token ids of a text as the model's ``tokenizer.json`` gives them (specials added, truncated)."""

    def __init__(self, tokenizer_json: Path, max_length: int) -> None:
        spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
        model = spec["model"]
        if model.get("type") != "WordPiece" or not spec.get("normalizer", {}).get("lowercase", False):
            raise ValueError(f"{tokenizer_json}: not an uncased WordPiece tokenizer")
        self.vocab: dict[str, int] = model["vocab"]
        self.prefix = model.get("continuing_subword_prefix", "##")
        self.max_word = int(model.get("max_input_chars_per_word", 100))
        self.unk = self.vocab[model.get("unk_token", "[UNK]")]
        self.cls, self.sep = self.vocab["[CLS]"], self.vocab["[SEP]"]
        self.max_length = max_length

    @lru_cache(maxsize=65536)  # noqa: B019 - one tokenizer per process; words repeat across queries
    def _word_ids(self, word: str) -> tuple[int, ...]:
        if len(word) > self.max_word:
            return (self.unk,)
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            if end == start:  # no piece matches: the whole word is unknown
                return (self.unk,)
            start = end
        return tuple(ids)

    def encode(self, text: str) -> list[int]:
        ids = [i for word in _words(text) for i in self._word_ids(word)]
        return [self.cls, *ids[: self.max_length - 2], self.sep]
