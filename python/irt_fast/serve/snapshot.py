"""What one (model file, config file) pair serves with: the loaded model, its embedder, the
validated configuration and the file's sha256. Hot reload builds a new Snapshot beside the old
one (load, validate, warm) and swaps one reference; requests keep the snapshot they started on.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import irt_fast
from irt_fast.embedders import load as load_encoder
from irt_fast.embedders import resolve
from irt_fast.errors import EmbedderError
from irt_fast.serve.config import ServeConfig, read_config, resolve_config
from irt_fast.serve.routing import score_alone

#: Characters per token assumed when a prompt's token count must be estimated before the
#: upstream counts it (routing costs) or a text cut to the embedder's length.
CHARS_PER_TOKEN = 4


class ModelScorer:
    """The served model and its embedder, as the batcher calls them (thread-safe: the engine
    and the encoders keep no per-call state)."""

    def __init__(self, model: irt_fast.Model) -> None:
        self.model = model
        emb = model.embedder
        self.normalize = bool(emb["normalize"])
        self._encoder: Any = None
        self._embedder_error: str | None = None
        try:
            # A name read from the weights file is untrusted: only a built embedder id.
            self._encoder = load_encoder(resolve(emb["name"], from_file=True))
        except EmbedderError as e:
            self._embedder_error = str(e)
        tokens = getattr(self._encoder, "max_length", None) or getattr(
            self._encoder, "max_seq_length", None
        )
        #: The encoder's vectors have unit length already (a second pass costs ~0.1 ms cold).
        self._normalized = getattr(self._encoder, "normalize", None) is True
        #: Longest routed text kept (characters): about the embedder's token limit.
        self.max_chars = int(tokens or 512) * CHARS_PER_TOKEN

    @property
    def can_embed(self) -> bool:
        return self._encoder is not None

    @property
    def embedder_error(self) -> str | None:
        return self._embedder_error

    def embed(self, texts: list[str]) -> np.ndarray:
        """float32 ``[n, embed_dim]``, as :meth:`irt_fast.Model.route` embeds texts."""
        if self._encoder is None:
            raise EmbedderError(f"text routing is unavailable: {self._embedder_error}")
        one = getattr(self._encoder, "encode_one", None) if len(texts) == 1 else None
        if one is not None:  # a static embedder's lone text: the same values in fewer steps
            v = one(texts[0])
        else:
            v = np.asarray(self._encoder.encode(texts, batch_size=max(1, len(texts))), np.float32)
        if self.normalize and not self._normalized:
            v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        if v.shape != (len(texts), self.model.embed_dim) or not np.isfinite(v).all():
            raise EmbedderError(
                f"the embedder gave shape {list(v.shape)} or non-finite values; the model "
                f"expects [{len(texts)}, {self.model.embed_dim}]"
            )
        return np.ascontiguousarray(v)

    def proba(self, x: np.ndarray) -> np.ndarray:
        """P(correct) ``[n, n_llms]``."""
        return self.model.predict_proba(x)


@dataclass(frozen=True)
class Snapshot:
    """One served (model, config) pair."""

    model_path: str
    config_path: str
    sha256: str
    config: ServeConfig
    scorer: ModelScorer
    index: dict[str, int] = field(repr=False)
    """LLM name → column of P."""

    @property
    def model(self) -> irt_fast.Model:
        return self.scorer.model

    def info(self) -> dict[str, Any]:
        """What responses say about the model serving them."""
        m = self.model
        return {
            "sha256": self.sha256,
            "n_llms": m.n_llms,
            "embed_dim": m.embed_dim,
            "embedder": m.embedder["name"],
        }


def file_sha256(path: str) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks.

    Args:
        path: the file.

    Returns:
        The digest as 64 hex characters.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_snapshot(
    model_path: str | os.PathLike[str],
    config_path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    warm: bool = True,
) -> Snapshot:
    """Load the model, validate the config against it and warm both (blocking; seconds).

    Args:
        model_path: the weights file.
        config_path: ``router.toml``.
        environ: where the config's key variables are read (default ``os.environ``).
        warm: score one text (and one embedding) so the first request pays no loading.

    Returns:
        The Snapshot.

    Raises:
        FileNotFoundError, irt_fast.errors.WeightsFormatError, irt_fast.errors.InputError,
        irt_fast.errors.EmbedderError: a missing or broken file or config.
    """
    mp, cp = os.fspath(model_path), os.fspath(config_path)
    file = read_config(cp)  # cheap, and its engine_threads applies to the load
    sha = file_sha256(mp)
    model = irt_fast.load(mp, threads=file.server.engine_threads, dtype=file.server.engine_dtype)
    config = resolve_config(file, model.llm_names, environ, where=cp)
    scorer = ModelScorer(model)
    if warm:
        score_alone(scorer, None, np.zeros((1, model.embed_dim), np.float32))
        if scorer.can_embed:
            score_alone(scorer, ["warm-up"], None)
    index = {n: i for i, n in enumerate(model.llm_names)}
    return Snapshot(mp, cp, sha, config, scorer, index)
