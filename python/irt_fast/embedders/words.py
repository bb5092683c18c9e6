"""One text's token ids from cached words, for tokenisers whose words never interact.

A gateway embeds one short text per request, and at a modest request rate its caches are cold
between requests: a ``tokenizers`` call (normaliser, pre-tokeniser, WordPiece, the Encoding
object) then costs 160-200 µs on the development machine against 30-50 µs back to back
(benches/_cold_path.py). Real traffic reuses its words, so caching each word's ids and
joining them costs a split and a few dictionary look-ups: 36-41 µs cold, under 2 µs hot.

This is exact only where a text's ids are the concatenation of its whitespace-separated
words' ids: a BERT-style normaliser works character by character, a BERT/whitespace
pre-tokeniser splits on whitespace first, and the model (WordPiece, WordLevel) sees one
pre-token at a time. In ASCII made of printable characters, spaces, tabs and line breaks,
``str.split()`` splits exactly where the pre-tokeniser does; any other text (non-ASCII, other
control characters, which a BERT normaliser deletes rather than splits on) goes to the
tokeniser whole. Truncation applies to the joined ids, as the tokeniser applies it to the
whole text.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

#: Words kept (least recently used dropped): about 200 bytes each, so ~13 MB at most.
MAX_WORDS = 1 << 16

_NORMALIZERS = {
    "BertNormalizer",
    "Lowercase",
    "NFC",
    "NFD",
    "NFKC",
    "NFKD",
    "Strip",
    "StripAccents",
}
_PRE_TOKENIZERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}
_MODELS = {"WordPiece", "WordLevel"}
_SPACES = str.maketrans("\t\n\r", "   ")


def _types(node: Any) -> list[str]:
    """The component types of a tokenizer.json normaliser or pre-tokeniser (a Sequence's parts)."""
    if node is None:
        return []
    if node.get("type") == "Sequence":
        parts = node.get("normalizers") or node.get("pretokenizers") or []
        return [t for p in parts for t in _types(p)]
    return [str(node.get("type"))]


def word_separable(spec: dict[str, Any]) -> bool:
    """Whether a tokenizer (its tokenizer.json as a dict) gives any printable-ASCII text the
    concatenation of its whitespace-separated words' ids."""
    model = spec.get("model") or {}
    pre = _types(spec.get("pre_tokenizer"))
    added = spec.get("added_tokens") or []
    return (
        model.get("type") in _MODELS
        and set(_types(spec.get("normalizer"))) <= _NORMALIZERS
        and bool(pre)
        and set(pre) <= _PRE_TOKENIZERS
        and not any(" " in str(a.get("content", " ")) for a in added)
    )


class WordIds:
    """``ids(text)``: the token ids ``tokenizer.encode(text, add_special_tokens=False)`` gives,
    from cached words where that is exact, else from the tokenizer.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` set up as it will be used (truncation included).
        max_length: the truncation length the tokenizer applies, or None.
    """

    def __init__(self, tokenizer: Any, max_length: int | None) -> None:
        self._tok = tokenizer
        self._max = max_length
        self.enabled = word_separable(json.loads(tokenizer.to_str()))

        def word(w: str) -> tuple[int, ...]:
            return tuple(tokenizer.encode(w, add_special_tokens=False).ids)

        self._word: Callable[[str], tuple[int, ...]] = functools.lru_cache(MAX_WORDS)(word)

    def __call__(self, text: str) -> list[int]:
        if not (self.enabled and text.isascii() and _spaced_printable(text)):
            return self._tok.encode(text, add_special_tokens=False).ids  # a new list each call
        ids: list[int] = []
        for w in text.split():
            ids += self._word(w)
            if self._max is not None and len(ids) >= self._max:
                return ids[: self._max]
        return ids


def _spaced_printable(text: str) -> bool:
    """Printable characters, spaces, tabs and line breaks only."""
    return text.isprintable() or text.translate(_SPACES).isprintable()
