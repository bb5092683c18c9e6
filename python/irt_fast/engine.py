"""The user-facing inference API on top of the Rust engine (``irt_fast._core``).

This layer checks arguments, embeds texts, maps LLM names to indices and costs to candidates,
streams large query sets through the engine in chunks and dresses up the results. The numbers
are computed in Rust, on a thread pool, with the GIL released. Changing the pool of LLMs
(``add_llm``, ``drop_llms``) lives in :mod:`irt_fast.pool`, writing a model in
:mod:`irt_fast.model_io`; ``Model``'s methods delegate to them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from irt_fast import inputs
from irt_fast._native import _core
from irt_fast.chunks import iter_chunks
from irt_fast.errors import EmbedderError, InputError, UnknownLLMError
from irt_fast.onboard.mixin import OnboardMixin
from irt_fast.pool import PoolMixin

if TYPE_CHECKING:
    from irt_fast.onboard.prior import Prior

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


class Model(PoolMixin, OnboardMixin):
    """A trained model loaded into the Rust engine. Create with :func:`irt_fast.load`.

    Query inputs (``x``) everywhere are either a float array ``[B, embed_dim]`` (one query may be
    a 1-D ``[embed_dim]`` vector), converted to C-contiguous float32 if it is not already, or a
    list of strings, embedded first with the model's sentence embedder (``embedder=`` overrides
    it with a name or local path you trust). A numpy masked array is refused if any value is
    masked.

    A Model never changes: ``add_llm``/``add_fitted_llm``/``drop_llms`` (from
    :class:`irt_fast.pool.PoolMixin`) return a new one sharing the item network; ``save``
    writes it; ``probe``, ``anchors`` and ``estimate_from_anchors`` (from
    :class:`irt_fast.onboard.mixin.OnboardMixin`) score a new LLM from a few of its answers.
    """

    def __init__(
        self,
        engine: Any,
        path: str | None = None,
        *,
        source: tuple[int, int, int] | None = None,
        prior: Prior | None = None,
    ) -> None:
        self._engine = engine
        self.path = path
        # (size, mtime_ns, inode) of ``path`` when it was loaded: save() reads the item network
        # back from it and must know it is still the same file.
        self._source = source
        self._prior = prior
        self.llm_names: list[str] = list(engine.llm_names)
        self._index = {n: i for i, n in enumerate(self.llm_names)}
        self.embed_dim: int = engine.embed_dim
        self.d: int = engine.d
        self.method: str = engine.method
        self.config: dict[str, Any] = json.loads(engine.config_json)
        name, dim, normalize = engine.embedder
        self.embedder: dict[str, Any] = {"name": name, "dim": dim, "normalize": normalize}
        self.training: dict[str, Any] | None = inputs.training_metadata(engine.training_json)

    @property
    def n_llms(self) -> int:
        return len(self.llm_names)

    @property
    def threads(self) -> int:
        return int(self._engine.threads)

    @property
    def kernel(self) -> str:
        """The kernel the large products run on, on this CPU: "avx512bf16" (``dtype="bf16"``
        where the CPU has AVX512_BF16: bf16 weights and activations, f32 sums), "avx2+fma" or
        "scalar" (up to 16 queries per product; above them the gemm crate)."""
        return str(self._engine.kernel)

    @property
    def flushed_subnormals(self) -> int:
        """Subnormal values (below 1.18e-38) the weights file held, set to zero at load (a
        change below 1.2e-38 each; they would make x86 arithmetic slow), plus any among LLMs
        added since."""
        return int(self._engine.flushed_subnormals)

    def __repr__(self) -> str:
        where = f", path={self.path!r}" if self.path else ""
        return f"Model({self._engine!r}{where})"

    # ---------------------------------------------------------------- inputs

    def _queries(self, x: Any, embedder: str | os.PathLike[str] | None = None) -> np.ndarray:
        if (  # already what the engine reads (the gateway's case): no numpy call on the way
            type(x) is np.ndarray
            and x.dtype == np.float32
            and x.ndim == 2
            and x.shape[0] > 0
            and x.shape[1] == self.embed_dim
            and x.flags.c_contiguous
        ):
            return x
        if x is None:
            raise InputError("x is None: give queries (an array [B, embed_dim] or texts)")
        x = inputs.unmasked("x", x)
        if isinstance(x, str):
            x = [x]
        if inputs.is_texts(x):
            return self._embed(list(x), embedder)
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise InputError(f"x must be a float array [B, {self.embed_dim}]: {exc}") from exc
        if arr.dtype.kind not in "fiu":  # bools are no embeddings: a mistake, refused
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
        # A name from the weights file is untrusted: embed_texts resolves it only among the
        # built embedders. A name the caller passes is theirs to trust.
        from_file = embedder is None
        name = self.embedder["name"] if from_file else inputs.path_arg("embedder", embedder)
        emb = embed_texts(
            texts,
            name,
            normalize=self.embedder["normalize"],
            progress=False,
            from_file=from_file,
        )
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
        except (KeyError, TypeError):  # TypeError: an unhashable "name"
            raise UnknownLLMError(
                f"unknown LLM {name!r}; the model knows {len(self.llm_names)}: "
                f"{', '.join(self.llm_names[:8])}{', ...' if self.n_llms > 8 else ''}"
            ) from None

    # ---------------------------------------------------------------- scoring

    def predict_proba(self, x: Any, *, embedder: str | None = None) -> np.ndarray:
        """P(correct) of every LLM for every query.

        Args:
            x: queries (see the class docstring).
            embedder: embedder name or path for text input (default: the model's).

        Returns:
            float32 ``[B, n_llms]``.
        """
        return self._engine.predict_proba(self._queries(x, embedder))

    def item_params(self, x: Any, *, embedder: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Item parameters of each query.

        Args:
            x: queries (see the class docstring).
            embedder: embedder name or path for text input (default: the model's).

        Returns:
            ``alpha`` float32 ``[B, d]`` and ``beta`` float32 ``[B]``.
        """
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
        names = (
            list(self.llm_names)
            if candidates is None
            else inputs.name_list("candidates", candidates)
        )
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
            if lam is not None:
                rule, param = "penalty", inputs.real("lam", lam)
            else:
                rule, param = "within_best", inputs.real("margin", margin)
        q = self._queries(x, embedder)
        choice, proba = self._engine.route(q, idx, costs, rule, param)
        indices = choice.astype(np.int64)
        return Routed([self.llm_names[i] for i in indices], indices, proba)

    def _costs(self, cost: Any, names: list[str]) -> list[float]:
        cost = inputs.unmasked("cost", cost)
        if isinstance(cost, Mapping):
            unknown = [k for k in cost if k not in self._index]
            if unknown:
                raise UnknownLLMError(f"cost names unknown LLM(s): {unknown}")
            missing = [n for n in names if n not in cost]
            if missing:
                raise InputError(f"no cost given for candidate(s) {missing}")
            return [inputs.real(f"cost[{n!r}]", cost[n]) for n in names]
        if isinstance(cost, (str, bytes)) or not isinstance(cost, Iterable):
            raise InputError(
                f"cost must be a mapping name → cost or a sequence of costs, got {cost!r}"
            )
        raw = cost.tolist() if isinstance(cost, np.ndarray) else list(cost)
        values = [inputs.real(f"cost[{i}]", c) for i, c in enumerate(raw)]
        if len(values) == self.n_llms and len(names) != self.n_llms:
            values = [values[self._index[n]] for n in names]
        elif len(values) != len(names):
            raise InputError(
                f"{len(values)} costs for {len(names)} candidates ({self.n_llms} LLMs)"
            )
        return values

    def predict_accuracy(
        self,
        x: Any,
        *,
        groups: Sequence[Any] | np.ndarray | bool | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        as_frame: bool = False,
        embedder: str | None = None,
    ) -> Any:
        """Predicted accuracy of every LLM over a query set: the mean of P(correct).

        Args:
            x: queries: an array ``[N, embed_dim]``, a list of texts, or an iterable of such
                chunks (a generator streams a set larger than memory; with ``groups=True`` each
                chunk is a ``(queries, labels)`` pair, and such pairs are refused without it).
                Processed ``chunk_size`` rows at a time, so working memory does not grow with N.
            groups: a label per query (e.g. the benchmark name) to get one accuracy per group;
                NaN or None labels are refused (name them, e.g. ``"unknown"``).
            chunk_size: rows per engine call (a positive integer).
            as_frame: return a polars DataFrame (columns ``[group,] llm, accuracy, n``).
            embedder: embedder name or path for text input (default: the model's).

        Returns:
            ``{llm: accuracy}``; with groups ``{group: {llm: accuracy}}``.
        """
        chunk_size = inputs.positive_int("chunk_size", chunk_size)
        if groups is False:
            groups = None
        grouped = groups is not None
        labels: dict[Any, int] = {}
        sums: list[np.ndarray] = []  # per group, float64 [n_llms]
        counts: list[int] = []

        for q, lab in iter_chunks(x, groups, chunk_size):
            q = self._queries(q, embedder)
            gid = None
            if grouped:
                assert lab is not None
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
        if not counts or sum(counts) == 0:
            raise InputError("x holds no queries")
        acc = [s / c for s, c in zip(sums, counts, strict=True)]
        if as_frame:
            return self._frame(acc, counts, list(labels) if grouped else None)
        if not grouped:
            return dict(zip(self.llm_names, acc[0].tolist(), strict=True))
        return {
            key: dict(zip(self.llm_names, acc[g].tolist(), strict=True))
            for key, g in labels.items()
        }

    def _frame(self, acc: list[np.ndarray], counts: list[int], keys: list[Any] | None) -> Any:
        import polars as pl

        rows: dict[str, list[Any]] = {"llm": [], "accuracy": [], "n": []}
        if keys is not None:
            rows = {"group": [], **rows}
        for g, key in enumerate(keys if keys is not None else [None]):
            for j, name in enumerate(self.llm_names):
                if keys is not None:
                    rows["group"].append(key)
                rows["llm"].append(name)
                rows["accuracy"].append(float(acc[g][j]))
                rows["n"].append(counts[g])
        return pl.DataFrame(rows)


def load(path: str | os.PathLike[str], *, threads: int | None = None, dtype: str = "f32") -> Model:
    """Load a weights file (format v1 or v2) into the Rust engine.

    Args:
        path: the ``.safetensors`` file written by ``python -m training.fit`` or ``Model.save``.
        threads: worker threads (default: every available core; at most
            ``irt_fast.inputs.MAX_THREADS``).
        dtype: storage of the item network's large weight matrices: ``"f32"`` (exact, the
            default) or ``"bf16"`` (bfloat16: half the bytes per query, sums in f32; the gate,
            biases, heads and abilities stay f32). Its accuracy cost: docs/engine.md.

    Returns:
        The Model.

    Raises:
        FileNotFoundError: no such file.
        irt_fast.errors.WeightsFormatError: corrupt or truncated file, another format version,
            or a tensor whose name, dtype or shape disagrees with the config.
        irt_fast.errors.InputError: a bad ``path``, ``threads`` or ``dtype`` argument.
    """
    p = inputs.path_arg("path", path)
    if dtype not in ("f32", "float32", "bf16", "bfloat16"):
        raise InputError(f"dtype must be 'f32' or 'bf16', got {dtype!r}")
    if threads is not None:
        threads = inputs.positive_int("threads", threads, maximum=inputs.MAX_THREADS)
    before = _file_id(p)
    engine = _core().Engine.load(p, threads, dtype)
    # The identity is taken before reading: if the file was replaced meanwhile, save() sees a
    # mismatch and refuses rather than mixing two files' tensors.
    return Model(engine, p, source=before)


def _file_id(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # the engine reports the missing file with its own message
    return (st.st_size, st.st_mtime_ns, st.st_ino)


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
