"""Fixed anchor sets: the same k questions for every new LLM, chosen once (no interaction).

Choice (``choose_anchors``): the k answers are shared out over the target's groups as the
``neyman`` design shares them (target share × √(p(1 − p)) under the prior; at least one per
group while k allows); within a group the pool questions are cut into that many clusters by
k-means on what the population prior says of each item (its prior-mean logit and its loadings
on the leading directions of the prior covariance, in logit units); each cluster's anchor is
the question nearest its centre, and its weight is the share of the target the cluster stands
for. ``Σ weight · answer`` is then the plain weighted estimate (the tinyBenchmarks anchor
estimate); ``estimate_from_anchors`` does better with the model: a fit from the anchors'
answers, whose prediction for every unasked target question is corrected by the leave-one-out
residual of its cluster's anchor (the estimators of :mod:`irt_fast.onboard.estimators`, one
answer per stratum).

An ``Anchors`` object carries what the estimate needs (the anchors' and the target's item
parameters), so it is self-contained: ``write`` stores it as Parquet (one row per anchor; the
arrays in the file's metadata, about 4·(d + 1) bytes per target question) and
``read_anchors`` reads it back.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from irt_fast import inputs
from irt_fast.errors import DataError, InputError

from .design import assign_pool_groups, item_features, kmeans, match_rows, pool_weight
from .estimators import Estimate, Target, estimate_all, gaussian_draws, to_estimate
from .fit import fit_llm
from .options import ProbeOptions, answers_arg, labels_arg
from .prior import Prior

__all__ = ["Anchors", "choose_anchors", "estimate_from_anchors", "read_anchors"]

_FORMAT = "irt_fast.anchors/1"
_ARRAYS = ("alpha", "beta", "cluster_size", "anchor_target", "target_alpha", "target_beta",
           "target_group", "target_cluster")  # fmt: skip


@dataclass(frozen=True, eq=False)
class Anchors:
    """k anchor questions and what estimating from their answers needs.

    Attributes:
        index: int ``[k]``: pool indices of the anchors, in the order to ask them.
        weight: float ``[k]``: the share of the target each anchor's cluster stands for.
        group: the target group of each anchor (None without groups).
        query_id: the anchors' query ids when the pool came with ids, else None.
        alpha, beta: the anchors' item parameters ``[k, d]``, ``[k]``.
        cluster_size: int ``[k]``: pool questions in each anchor's cluster.
        anchor_target: int ``[k]``: the target index of an anchor that is a target question.
        target_alpha, target_beta: the target's item parameters.
        target_group: int ``[n_t]`` group code of each target question; group_names the labels.
        target_cluster: int ``[n_t]``: the anchor whose cluster a target question is in (-1:
            not a pool question).
        fingerprint: identifies the model (its prior) the anchors were chosen with.
    """

    index: np.ndarray
    weight: np.ndarray
    group: list[Any]
    query_id: list[Any] | None
    alpha: np.ndarray
    beta: np.ndarray
    cluster_size: np.ndarray
    anchor_target: np.ndarray
    target_alpha: np.ndarray
    target_beta: np.ndarray
    target_group: np.ndarray
    group_names: list[Any]
    target_cluster: np.ndarray
    fingerprint: str

    @property
    def k(self) -> int:
        return len(self.index)

    def to_frame(self) -> Any:
        """A polars DataFrame, one row per anchor: position, pool_index, query_id (when
        known), group, weight, cluster_size."""
        import polars as pl

        cols: dict[str, Any] = {"position": np.arange(self.k), "pool_index": self.index}
        if self.query_id is not None:
            cols["query_id"] = self.query_id
        if self.group_names:
            cols["group"] = [str(g) for g in self.group]
        cols["weight"] = self.weight
        cols["cluster_size"] = self.cluster_size
        return pl.DataFrame(cols)

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the anchors as Parquet (atomically), readable by ``read_anchors``."""
        from irt_fast._atomic import atomic_write

        try:
            labels = {"group_names": json.dumps(self.group_names), "groups": json.dumps(self.group)}
        except TypeError:
            raise InputError("group labels must be strings or numbers to be written") from None
        meta = {
            "format": _FORMAT,
            "fingerprint": self.fingerprint,
            **labels,
            **{name: _pack(getattr(self, name)) for name in _ARRAYS},
        }
        frame = self.to_frame()
        p = Path(inputs.path_arg("path", path))
        return atomic_write(p, lambda tmp: frame.write_parquet(tmp, metadata=meta))


def fingerprint(prior: Prior) -> str:
    """A short identity of a model's prior (anchors are only valid for their model)."""
    h = hashlib.sha256(np.ascontiguousarray(prior.mean, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(prior.cov, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def _pack(a: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _unpack(s: str) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(s.encode("ascii"))), allow_pickle=False)


def read_anchors(path: str | os.PathLike[str]) -> Anchors:
    """Anchors written by ``Anchors.write`` (or ``irt-fast anchors``).

    Args:
        path: the Parquet file.

    Returns:
        The Anchors.

    Raises:
        FileNotFoundError: no such file.
        DataError: not an anchors file, or a damaged one.
    """
    import polars as pl

    p = Path(inputs.path_arg("path", path))
    if not p.is_file():
        raise FileNotFoundError(f"anchors file not found: {p}")
    try:
        meta = pl.read_parquet_metadata(p)
        if meta.get("format") != _FORMAT:
            raise DataError(f"{p}: not an irt_fast anchors file (no {_FORMAT!r} metadata)")
        df = pl.read_parquet(p)
        arrays = {name: _unpack(meta[name]) for name in _ARRAYS}
        names = json.loads(meta["group_names"])
        groups = json.loads(meta["groups"])
    except DataError:
        raise
    except (pl.exceptions.PolarsError, OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{p}: cannot read anchors: {str(exc)[:300]}") from None
    qid = df["query_id"].to_list() if "query_id" in df.columns else None
    return Anchors(
        index=df["pool_index"].to_numpy().astype(np.int64),
        weight=df["weight"].to_numpy().astype(np.float64),
        group=groups,
        query_id=qid,
        group_names=names,
        fingerprint=str(meta.get("fingerprint", "")),
        **arrays,
    )


def choose_anchors(
    alpha_pool: Any,
    beta_pool: Any,
    alpha_target: Any,
    beta_target: Any,
    prior: Prior,
    k: int,
    *,
    groups: Any = None,
    pool_groups: Any = None,
    query_ids: Any = None,
    seed: int = 0,
) -> Anchors:
    """Choose k anchors of the pool for the target (see the module docstring).

    Args:
        alpha_pool, beta_pool: the pool's item parameters ``[n, d]``, ``[n]``.
        alpha_target, beta_target: the target's (may be the pool's: a benchmark scored from
            anchors drawn from itself).
        prior: the model's population prior.
        k: the number of anchors (at most the pool size).
        groups: one label per target question; pool_groups: one per pool question.
        query_ids: one id per pool question, kept with the anchors.
        seed: seeds the clustering.

    Returns:
        The Anchors.
    """
    from .probe import _as_params

    ap, bp = _as_params(alpha_pool, beta_pool, "pool")
    at, bt = _as_params(alpha_target, beta_target, "target")
    ProbeOptions.from_kwargs({"seed": seed})
    n_pool, d = ap.shape
    k = inputs.positive_int("k", k, maximum=n_pool)
    if at.shape[1] != d or not isinstance(prior, Prior) or prior.dim not in (d, d + 1):
        raise InputError(f"prior must be a Prior of dimension {d} or {d + 1}, matching α")
    has_bias = prior.dim == d + 1
    if groups is None:
        names: list[Any] = []
        tg = np.zeros(len(bt), dtype=np.int64)
    else:
        names, tg = labels_arg("groups", groups, len(bt))
    n_groups = max(1, len(names))
    share = np.bincount(tg, minlength=n_groups) / len(bt)
    pg = assign_pool_groups(pool_groups, names, ap, bp, at, bt, tg)
    weight = pool_weight(pg, share)
    xp = np.column_stack([ap, np.ones(n_pool)]) if has_bias else ap
    feats = _features(xp, bp, prior)
    pbar = 0.5 * (1 + np.tanh(0.5 * (xp @ prior.mean - bp)))
    alloc = _allocate(k, pg, weight * np.sqrt(pbar * (1 - pbar)), n_groups)
    rng = np.random.default_rng(seed)
    index, w, size, cluster_of = [], [], [], np.full(n_pool, -1, dtype=np.int64)
    for g in range(n_groups):
        members = np.flatnonzero(pg == g)
        if alloc[g] == 0:
            continue
        lab = kmeans(feats[members], int(alloc[g]), rng)
        for c in range(int(lab.max()) + 1):
            m = members[lab == c]
            centre = feats[m].mean(0)
            index.append(int(m[np.argmin(((feats[m] - centre) ** 2).sum(1))]))
            w.append(float(weight[m].sum()))
            size.append(len(m))
            cluster_of[m] = len(index) - 1
    idx = np.asarray(index, dtype=np.int64)
    t_of_p = match_rows(ap, bp, at, bt)
    target_cluster = np.full(len(bt), -1, dtype=np.int64)
    inpool = np.flatnonzero(t_of_p >= 0)
    target_cluster[t_of_p[inpool]] = cluster_of[inpool]
    wa = np.asarray(w)
    qids = None if query_ids is None else [list(query_ids)[i] for i in idx]
    return Anchors(
        index=idx,
        weight=wa / wa.sum() if wa.sum() > 0 else wa,
        group=[names[pg[i]] for i in idx] if names else [None] * len(idx),
        query_id=qids,
        alpha=ap[idx],
        beta=bp[idx],
        cluster_size=np.asarray(size, dtype=np.int64),
        anchor_target=t_of_p[idx],
        target_alpha=at,
        target_beta=bt,
        target_group=tg,
        group_names=names,
        target_cluster=target_cluster,
        fingerprint=fingerprint(prior),
    )


def _features(x: np.ndarray, beta: np.ndarray, prior: Prior) -> np.ndarray:
    return item_features(x, beta, prior.mean, prior.cov, n_directions=4)


def _allocate(k: int, pg: np.ndarray, score: np.ndarray, n_groups: int) -> np.ndarray:
    """k anchors over the groups ∝ Σ score (largest remainders), at least one per group with
    pool questions and a target share while k allows, never more than a group's pool size."""
    size = np.bincount(pg[pg >= 0], minlength=n_groups)
    mass = np.bincount(pg[pg >= 0], weights=score[pg >= 0], minlength=n_groups)
    live = (size > 0) & (mass > 0)
    alloc = np.zeros(n_groups, dtype=np.int64)
    if live.sum() <= k:
        alloc[live] = 1
    left = k - int(alloc.sum())
    while left > 0:
        room = live & (alloc < size)
        if not room.any():
            break
        want = np.where(room, mass / mass[room].sum() * (alloc.sum() + left) - alloc, -np.inf)
        alloc[int(np.argmax(want))] += 1
        left -= 1
    return alloc


def estimate_from_anchors(
    anchors: Anchors,
    answers: Any,
    prior: Prior,
    *,
    estimator: str = "blend",
    **kwargs: Any,
) -> Estimate:
    """The new LLM's accuracy on the anchors' target from its answers to the anchors.

    Args:
        anchors: from ``choose_anchors`` / ``Model.anchors`` / ``read_anchors``.
        answers: its k 0/1 answers, in the anchors' order.
        prior: the model's prior (must be the one the anchors were chosen with).
        estimator: "blend", "aipw" or "model".
        **kwargs: level, seed, n_draws, model_error, group_model_error (as for a Probe).

    Returns:
        The Estimate (overall and by group), as ``Probe.estimate`` gives it.
    """
    if not isinstance(anchors, Anchors):
        raise InputError(f"anchors must be an irt_fast Anchors, got {type(anchors).__name__}")
    o = ProbeOptions.from_kwargs({**kwargs, "estimator": estimator})
    if anchors.fingerprint != fingerprint(prior):
        raise InputError("these anchors were chosen for another model (its prior differs)")
    _, y = answers_arg(np.arange(anchors.k), answers, anchors.k)
    has_bias = prior.dim == anchors.alpha.shape[1] + 1
    t = _target(anchors, has_bias)
    post = fit_llm(anchors.alpha, anchors.beta, y, prior, has_bias=has_bias,
                   prior_scales=o.prior_scales)  # fmt: skip
    xa = t.xp_anchor
    z = np.random.default_rng([o.seed, 1]).standard_normal((prior.dim, o.n_draws))
    gme = o.group_model_error if o.group_model_error is not None else o.model_error
    draws = gaussian_draws(post.mean, post.cov, z)
    raw = estimate_all(t.target, np.arange(anchors.k), y, xa, anchors.beta, post.mean,
                       post.cov, draws, o.model_error, gme, True)  # fmt: skip
    return to_estimate(raw[estimator], t.target, anchors.group_names, anchors.k, o.level)


@dataclass
class _AnchorTarget:
    target: Target
    xp_anchor: np.ndarray


def _target(a: Anchors, has_bias: bool) -> _AnchorTarget:
    """The estimators' Target over a stand-in pool: the anchors (asked, one per cluster) and
    the target questions that were pool questions (unasked members of their clusters)."""

    def design(alpha: np.ndarray) -> np.ndarray:
        return np.column_stack([alpha, np.ones(len(alpha))]) if has_bias else alpha

    members = np.flatnonzero((a.target_cluster >= 0) & ~np.isin(np.arange(len(a.target_beta)),
                                                                 a.anchor_target))  # fmt: skip
    anchor_group = np.array(
        [a.group_names.index(g) if a.group_names else 0 for g in a.group], dtype=np.int64
    )
    stratum = np.concatenate([np.arange(a.k), a.target_cluster[members]])
    target = Target(
        xt=design(a.target_alpha),
        beta_t=a.target_beta,
        tg=a.target_group,
        n_groups=max(1, len(a.group_names)),
        target_of_pool=np.concatenate([a.anchor_target, members]),
        pool_group=np.concatenate([anchor_group, a.target_group[members]]),
        stratum=stratum,
        sizes=a.cluster_size,
    )
    return _AnchorTarget(target, design(a.alpha))
