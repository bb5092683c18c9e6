"""The user-facing inference API on top of the Rust engine (``irt_fast._core``).

This layer checks arguments, embeds texts, maps LLM names to indices and costs to candidates,
streams large query sets through the engine in chunks and dresses up the results. The numbers
are computed in Rust, on a thread pool, with the GIL released.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from irt_fast.errors import EmbedderError, InputError, UnknownLLMError

#: Rows handed to the engine per call by ``predict_accuracy``: bounds the float32 copy of the
#: input (and of text embeddings) at ``chunk_size × embed_dim × 4`` bytes.
DEFAULT_CHUNK_SIZE = 16384


class Routed(NamedTuple):
    """What ``route`` chose for each query."""

    names: list[str]
    """The chosen LLM's name per query."""
    indices: np.ndarray
    """The chosen LLM's index into ``model.llm_names`` per query (int64 [B])."""
    proba: np.ndarray
    """The chosen LLM's P(correct) per query (float32 [B])."""


def _core() -> Any:
    try:
        from irt_fast import _core as core
    except ImportError as exc:  # pragma: no cover - only without a build
        raise ImportError(
            "the irt_fast Rust extension is not built: run `make build-dev` "
            "(pip install --no-build-isolation -e .)"
        ) from exc
    return core


class Model:
    """A trained model loaded into the Rust engine. Create with :func:`irt_fast.load`.

    Query inputs (``x``) everywhere are either a float array ``[B, embed_dim]`` (one query may be
    a 1-D ``[embed_dim]`` vector), converted to C-contiguous float32 if it is not already, or a
    list of strings, embedded first with the model's sentence embedder (``embedder=`` overrides
    its name or local path).
    """

    def __init__(self, engine: Any, path: str | None = None) -> None:
        self._engine = engine
        self.path = path
        self.llm_names: list[str] = list(engine.llm_names)
        self._index = {n: i for i, n in enumerate(self.llm_names)}
        self.embed_dim: int = engine.embed_dim
        self.d: int = engine.d
        self.method: str = engine.method
        self.config: dict[str, Any] = json.loads(engine.config_json)
        name, dim, normalize = engine.embedder
        self.embedder: dict[str, Any] = {"name": name, "dim": dim, "normalize": normalize}
        tj = engine.training_json
        self.training: dict[str, Any] | None = json.loads(tj) if tj is not None else None

    @property
    def n_llms(self) -> int:
        return len(self.llm_names)

    @property
    def threads(self) -> int:
        return int(self._engine.threads)

    def __repr__(self) -> str:
        where = f", path={self.path!r}" if self.path else ""
        return f"Model({self._engine!r}{where})"

    # ---------------------------------------------------------------- inputs

    def _queries(self, x: Any, embedder: str | os.PathLike[str] | None = None) -> np.ndarray:
        if isinstance(x, str):
            x = [x]
        if isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(t, str) for t in x):
            return self._embed(list(x), embedder)
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise InputError(f"x must be a float array [B, {self.embed_dim}]: {exc}") from exc
        if arr.dtype.kind not in "fiub":
            raise InputError(
                f"x must be a float array [B, {self.embed_dim}] or a list of strings, "
                f"got dtype {arr.dtype}"
            )
        if arr.ndim == 1 and arr.shape[0] == self.embed_dim:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.embed_dim:
            raise InputError(
                f"x must have shape [B, {self.embed_dim}] (the model's embed_dim), "
                f"got {list(arr.shape)}"
            )
        if arr.shape[0] == 0:
            raise InputError("x holds no queries")
        return np.ascontiguousarray(arr, dtype=np.float32)

    def _embed(self, texts: list[str], embedder: str | os.PathLike[str] | None) -> np.ndarray:
        try:
            from irt_fast.embed import embed_texts
        except ImportError as exc:
            raise EmbedderError(
                "text input needs the sentence embedder: pip install 'irt_fast[text]' "
                f"(import failed: {exc})"
            ) from exc
        name = os.fspath(embedder) if embedder is not None else self.embedder["name"]
        emb = embed_texts(texts, name, normalize=self.embedder["normalize"], progress=False)
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[1] != self.embed_dim:
            raise EmbedderError(
                f"embedder {name!r} gives vectors of shape {list(emb.shape)[1:]}, "
                f"the model expects {self.embed_dim}"
            )
        return emb

    def _llm_index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise UnknownLLMError(
                f"unknown LLM {name!r}; the model knows {len(self.llm_names)}: "
                f"{', '.join(self.llm_names[:8])}{', ...' if self.n_llms > 8 else ''}"
            ) from None

    # ---------------------------------------------------------------- scoring

    def predict_proba(self, x: Any, *, embedder: str | None = None) -> np.ndarray:
        """P(correct) of every LLM for every query: float32 ``[B, n_llms]``."""
        return self._engine.predict_proba(self._queries(x, embedder))

    def item_params(self, x: Any, *, embedder: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Item parameters: ``alpha`` float32 ``[B, d]`` and ``beta`` float32 ``[B]``."""
        return self._engine.item_params(self._queries(x, embedder))

    def route(
        self,
        x: Any,
        *,
        candidates: Sequence[str] | None = None,
        cost: Mapping[str, float] | Sequence[float] | None = None,
        lam: float | None = None,
        margin: float | None = None,
        embedder: str | None = None,
    ) -> Routed:
        """The best LLM for each query.

        Args:
            x: queries (see the class docstring).
            candidates: LLM names to choose from (default: all, in ``llm_names`` order). Ties go
                to the earlier candidate.
            cost: cost per LLM, a mapping name → cost or a sequence aligned with ``candidates``
                (or with ``llm_names``). Needs ``lam`` or ``margin``.
            lam: maximise ``P − lam·cost``.
            margin: the cheapest candidate whose P is within ``margin`` of the best candidate's.
            embedder: embedder name or path for text input (default: the model's).

        Returns:
            Routed(names, indices, proba).
        """
        names = list(self.llm_names) if candidates is None else list(candidates)
        if isinstance(candidates, str):
            raise InputError("candidates must be a list of LLM names, not one string")
        if not names:
            raise InputError("candidates is empty")
        if len(set(names)) != len(names):
            raise InputError("candidates contains a name twice")
        idx = [self._llm_index(n) for n in names]
        rule, param, costs = "best", 0.0, None
        if lam is not None and margin is not None:
            raise InputError("pass either lam= or margin=, not both")
        if (lam is not None or margin is not None) and cost is None:
            raise InputError("lam= and margin= trade P against cost: pass cost= too")
        if cost is not None:
            if lam is None and margin is None:
                raise InputError("cost= needs a trade-off: lam= (P − lam·cost) or margin=")
            costs = self._costs(cost, names)
            rule, param = ("penalty", float(lam)) if lam is not None else ("margin", float(margin))  # type: ignore[arg-type]
        q = self._queries(x, embedder)
        choice, proba = self._engine.route(q, idx, costs, rule, param)
        indices = choice.astype(np.int64)
        return Routed([self.llm_names[i] for i in indices], indices, proba)

    def _costs(self, cost: Mapping[str, float] | Sequence[float], names: list[str]) -> list[float]:
        if isinstance(cost, Mapping):
            unknown = [k for k in cost if k not in self._index]
            if unknown:
                raise UnknownLLMError(f"cost names unknown LLM(s): {unknown}")
            missing = [n for n in names if n not in cost]
            if missing:
                raise InputError(f"no cost given for candidate(s) {missing}")
            values = [float(cost[n]) for n in names]
        else:
            values = [float(c) for c in cost]
            if len(values) == self.n_llms and len(names) != self.n_llms:
                values = [values[self._index[n]] for n in names]
            elif len(values) != len(names):
                raise InputError(
                    f"{len(values)} costs for {len(names)} candidates ({self.n_llms} LLMs)"
                )
        if not all(np.isfinite(values)):
            raise InputError("costs must be finite")
        return values

    def predict_accuracy(
        self,
        x: Any,
        *,
        groups: Sequence[Any] | np.ndarray | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        as_frame: bool = False,
        embedder: str | None = None,
    ) -> Any:
        """Predicted accuracy of every LLM over a query set: the mean of P(correct).

        Args:
            x: queries: an array ``[N, embed_dim]``, a list of texts, or an iterable of such
                chunks (a generator streams a set larger than memory; with ``groups`` each chunk
                is a ``(queries, labels)`` pair). Processed ``chunk_size`` rows at a time, so
                working memory does not grow with N.
            groups: a label per query (e.g. the benchmark name) to get one accuracy per group.
            as_frame: return a polars DataFrame (columns ``[group,] llm, accuracy, n``).

        Returns:
            ``{llm: accuracy}``; with groups ``{group: {llm: accuracy}}``.
        """
        if chunk_size < 1:
            raise InputError("chunk_size must be positive")
        grouped = groups is not None
        labels: dict[Any, int] = {}
        sums: list[np.ndarray] = []  # per group, float64 [n_llms]
        counts: list[int] = []

        def feed(q: Any, lab: Any) -> None:
            q = self._queries(q, embedder)
            gid = None
            if grouped:
                lab = list(lab) if not isinstance(lab, np.ndarray) else lab.tolist()
                if len(lab) != q.shape[0]:
                    raise InputError(f"{len(lab)} group labels for {q.shape[0]} queries")
                gid = np.fromiter(
                    (labels.setdefault(v, len(labels)) for v in lab), np.uint32, len(lab)
                )
                while len(sums) < len(labels):
                    sums.append(np.zeros(self.n_llms))
                    counts.append(0)
            elif not sums:
                sums.append(np.zeros(self.n_llms))
                counts.append(0)
            s, c = self._engine.predict_accuracy_sums(q, gid, max(len(labels), 1))
            for g in range(s.shape[0]):
                sums[g] += s[g]
                counts[g] += int(c[g])

        for q, lab in self._chunks(x, groups, chunk_size):
            feed(q, lab)
        if not counts or sum(counts) == 0:
            raise InputError("x holds no queries")
        acc = [s / c for s, c in zip(sums, counts, strict=True)]
        if as_frame:
            import polars as pl

            rows: dict[str, list[Any]] = {"llm": [], "accuracy": [], "n": []}
            keys = list(labels) if grouped else [None]
            if grouped:
                rows = {"group": [], **rows}
            for g, key in enumerate(keys):
                for j, name in enumerate(self.llm_names):
                    if grouped:
                        rows["group"].append(key)
                    rows["llm"].append(name)
                    rows["accuracy"].append(float(acc[g][j]))
                    rows["n"].append(counts[g])
            return pl.DataFrame(rows)
        if not grouped:
            return dict(zip(self.llm_names, acc[0].tolist(), strict=True))
        return {
            key: dict(zip(self.llm_names, acc[g].tolist(), strict=True))
            for key, g in labels.items()
        }

    def _chunks(self, x: Any, groups: Any, chunk_size: int) -> Iterable[tuple[Any, Any]]:
        """(queries, labels) pieces of at most ``chunk_size`` rows."""
        if isinstance(x, str) or (
            isinstance(x, (list, tuple)) and x and all(isinstance(t, str) for t in x)
        ):
            texts = [x] if isinstance(x, str) else list(x)
            labs = None if groups is None else list(groups)
            if labs is not None and len(labs) != len(texts):
                raise InputError(f"{len(labs)} group labels for {len(texts)} queries")
            for i in range(0, len(texts), chunk_size):
                yield texts[i : i + chunk_size], None if labs is None else labs[i : i + chunk_size]
            return
        if isinstance(x, np.ndarray) or (isinstance(x, (list, tuple)) and not _is_chunk_list(x)):
            arr = np.asarray(x)
            if arr.ndim == 1:
                arr = arr[None, :]
            n = arr.shape[0]
            if isinstance(groups, bool):
                raise InputError("groups=True is for a stream of (queries, labels) chunks")
            if groups is not None and len(groups) != n:
                raise InputError(f"{len(groups)} group labels for {n} queries")
            for i in range(0, n, chunk_size):
                lab = None if groups is None else groups[i : i + chunk_size]
                yield arr[i : i + chunk_size], lab
            return
        # an iterable of chunks (arrays, or (array, labels) pairs when grouped)
        if groups is not None and not isinstance(groups, bool):
            raise InputError(
                "with a stream of chunks, give labels inside it as (queries, labels) pairs "
                "and pass groups=True"
            )
        for item in x:
            if groups is None:
                yield from self._chunks(item, None, chunk_size)
                continue
            try:
                q, lab = item
            except (TypeError, ValueError):
                raise InputError(
                    "with groups=True each chunk must be a (queries, labels) pair"
                ) from None
            yield from self._chunks(q, lab, chunk_size)


def _is_chunk_list(x: Sequence[Any]) -> bool:
    """A list of 2-D arrays (chunks) rather than a list of rows."""
    return len(x) > 0 and isinstance(x[0], np.ndarray) and x[0].ndim == 2


def load(path: str | os.PathLike[str], *, threads: int | None = None) -> Model:
    """Load a weights file (format v1) into the Rust engine.

    Args:
        path: the ``.safetensors`` file written by ``python -m training.fit``.
        threads: worker threads (default: every available core).

    Raises:
        FileNotFoundError: no such file.
        irt_fast.errors.WeightsFormatError: corrupt or truncated file, another format version,
            or a tensor whose name, dtype or shape disagrees with the config.
    """
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads must be a positive integer, got {threads!r}")
    engine = _core().Engine.load(os.fspath(path), threads)
    return Model(engine, os.fspath(path))


def _model(model: Model | str | os.PathLike[str]) -> Model:
    if isinstance(model, Model):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load(model)
    raise InputError(f"model must be an irt_fast.Model or a path, got {type(model).__name__}")


def route(x: Any, *, model: Model | str | os.PathLike[str], **kwargs: Any) -> Routed:
    """``model.route(x, **kwargs)``; ``model`` may also be a weights path."""
    return _model(model).route(x, **kwargs)


def predict_accuracy(x: Any, *, model: Model | str | os.PathLike[str], **kwargs: Any) -> Any:
    """``model.predict_accuracy(x, **kwargs)``; ``model`` may also be a weights path."""
    return _model(model).predict_accuracy(x, **kwargs)
