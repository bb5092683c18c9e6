"""The static embedder's one-text tokenisation from cached words gives the tokenizer's own ids,
and is used only for tokenizers whose words never interact."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pytest

from irt_fast.embedders import registry
from irt_fast.embedders.words import MAX_WORDS, WordIds, word_separable
from irt_fast.errors import EmbedderError

tokenizers = pytest.importorskip("tokenizers")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mmlu_pro"


def _minilm() -> tokenizers.Tokenizer:
    try:
        path = registry.packaged_model_path(registry.MINILM) / "tokenizer.json"
    except EmbedderError as e:
        pytest.skip(str(e))
    return tokenizers.Tokenizer.from_file(str(path))


def _texts(n: int = 3000) -> list[str]:
    """Random texts over printable ASCII, every kind of whitespace, control characters and
    non-ASCII letters, plus hand-made edge cases."""
    rng = random.Random(0)
    alphabet = string.printable + "\x00\x0b\x0c\x1c\x1f\x85\u2028éß漢🙂"
    out = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200))) for _ in range(n)]
    out += ["", " ", "  lead and trail  ", "a\tb\nc\r\nd", "a\x0bb", "a\x1cb", "naïve café",
            "[UNK] [UNK]x [MASK] x[SEP]", "x" * 150 + " y", "a," * 400, "word " * 300,
            "What is 2+2? (A) 3 (B) 4\n\nAnswer:"]  # fmt: skip
    return out


@pytest.mark.parametrize("max_length", [None, 32], ids=["whole", "truncated"])
def test_word_ids_equal_the_tokenizer(max_length):
    tok = _minilm()
    tok.no_padding()
    if max_length is None:
        tok.no_truncation()
    else:
        tok.enable_truncation(max_length)
    ids = WordIds(tok, max_length)
    assert ids.enabled
    texts = _texts()
    if SHARED.is_dir():  # real questions too, when the shared data is beside the checkout
        import polars as pl

        texts += pl.read_parquet(SHARED / "queries.parquet")["text"].head(2000).to_list()
    for t in texts:
        assert ids(t) == tok.encode(t, add_special_tokens=False).ids, repr(t[:60])
    info = ids._word.cache_info()
    assert info.hits > 0 and info.maxsize == MAX_WORDS  # the cache is used, and bounded


def test_interacting_tokenizers_use_the_tokenizer_whole():
    from tokenizers import models, pre_tokenizers

    bpe = tokenizers.Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "Ġ": 2}, merges=[]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    ids = WordIds(bpe, None)
    assert not ids.enabled  # a byte-level BPE marks the space in the next word: not separable
    assert ids("a b") == bpe.encode("a b", add_special_tokens=False).ids
    assert ids._word.cache_info().currsize == 0

    spec = json.loads(_minilm().to_str())
    assert word_separable(spec)
    spec["added_tokens"].append({"content": "new line", "special": False})
    assert not word_separable(spec)  # a token spanning a space would be split apart
    spec = json.loads(_minilm().to_str())
    spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁"}
    assert not word_separable(spec)
    spec["pre_tokenizer"] = None
    assert not word_separable(spec)
