"""``POST /v1/route`` and ``POST /v1/predict_accuracy``: :meth:`irt_fast.Model.route` and
:meth:`irt_fast.Model.predict_accuracy` over HTTP, scored through the micro-batcher.

Inputs are checked per request before they join a batch, so one malformed request can never
fail the others scored with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from irt_fast.embedders import check_texts
from irt_fast.errors import InputError
from irt_fast.serve.gateway import Gateway
from irt_fast.serve.routing import Arrival, Rule, choose
from irt_fast.serve.schemas import AccuracyRequest, ApiError, RouteRequest, validate
from irt_fast.serve.snapshot import CHARS_PER_TOKEN, Snapshot


def queries(
    texts: list[str] | None, embeddings: list[Any] | None, snap: Snapshot
) -> tuple[list[str] | None, np.ndarray | None, int]:
    """A request's texts or embeddings, checked.

    Args:
        texts: the request's texts (or None).
        embeddings: the request's embeddings as parsed JSON (or None).
        snap: the serving snapshot (limits, the model's dimension).

    Returns:
        (texts, None, n) or (None, float32 [n, embed_dim], n).
    """
    limit = snap.config.server.max_texts
    if (texts is None) == (embeddings is None):
        raise ApiError(400, "give either texts or embeddings (exactly one of them)")
    given = texts if texts is not None else embeddings
    assert given is not None
    what = "texts" if texts is not None else "embeddings"
    if not given:
        raise ApiError(400, f"{what} is empty", param=what)
    if len(given) > limit:
        raise ApiError(
            413,
            f"{len(given)} {what} in one request; at most {limit} (server.max_texts)",
            param=what,
        )
    if texts is not None:
        try:
            check_texts(texts)
        except InputError as e:
            raise ApiError(400, str(e), param="texts") from None
        if not snap.scorer.can_embed:
            raise ApiError(
                503, f"text input is unavailable: {snap.scorer.embedder_error}", kind="server_error"
            )
        return texts, None, len(texts)
    dim = snap.model.embed_dim
    try:
        arr = np.asarray(embeddings)
    except (ValueError, TypeError):
        arr = np.asarray([], dtype=object)
    if arr.dtype.kind not in "fiu" or arr.ndim != 2:
        raise ApiError(
            400, f"embeddings must be a list of lists of {dim} numbers each", param="embeddings"
        )
    if arr.shape[1] != dim:
        raise ApiError(
            400, f"embeddings must have shape [n, {dim}] (the model's embed_dim), got {list(arr.shape)}",
            param="embeddings",
        )  # fmt: skip
    x = np.ascontiguousarray(arr, dtype=np.float32)
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        r, c = bad[0]
        raise ApiError(
            400, f"embeddings contain a non-finite value at row {r}, column {c}", param="embeddings"
        )
    return None, x, len(x)


def _candidates(gw: Gateway, snap: Snapshot, given: list[str] | None) -> list[str]:
    cfg = snap.config
    if given is not None:
        names = given
        unknown = [n for n in names if n not in snap.index]
        if unknown:
            raise ApiError(400, f"candidates: unknown LLM {unknown[0]!r}", param="candidates")
    elif cfg.upstreams:
        names = gw.spend.available(cfg.candidates, cfg.upstreams)
        if not names:
            raise ApiError(
                429,
                "every candidate LLM has spent its budget (budget_usd)",
                kind="budget_exhausted",
            )
    else:
        names = list(snap.model.llm_names)
    if not names or len(set(names)) != len(names):
        raise ApiError(
            400, "candidates must be a non-empty list of distinct names", param="candidates"
        )
    return names


def _costs(
    snap: Snapshot, req: RouteRequest, names: list[str], texts: list[str] | None, n: int
) -> np.ndarray:
    if isinstance(req.cost, dict):
        unknown = [k for k in req.cost if k not in snap.index]
        if unknown:
            raise ApiError(400, f"cost names unknown LLM {unknown[0]!r}", param="cost")
        missing = [k for k in names if k not in req.cost]
        if missing:
            raise ApiError(400, f"no cost given for candidate {missing[0]!r}", param="cost")
        return np.array([req.cost[k] for k in names], np.float32)
    if isinstance(req.cost, list):
        if len(req.cost) != len(names):
            raise ApiError(400, f"{len(req.cost)} costs for {len(names)} candidates", param="cost")
        return np.array(req.cost, np.float32)
    ups = snap.config.upstreams
    bare = [k for k in names if k not in ups or not ups[k].priced]
    if bare:
        raise ApiError(
            400,
            f"lam/margin need a cost per candidate: pass cost (no price for {bare[0]!r})",
            param="cost",
        )
    tokens = [len(t) / CHARS_PER_TOKEN for t in texts] if texts is not None else [0.0] * n
    return np.array([[ups[k].expected_cost(t) for k in names] for t in tokens], np.float32)


async def route(gw: Gateway, body: Any, arrival: Arrival) -> dict[str, Any]:
    """Answer ``POST /v1/route`` (see docs/serving.md for the fields).

    Args:
        gw: the gateway.
        body: the parsed JSON body.
        arrival: the request's batcher announcement.

    Returns:
        ``{"llms", "p", "model"}`` (+ ``"candidates"``, ``"proba"`` when asked).
    """
    snap = gw.snapshot
    req: RouteRequest = validate(RouteRequest, body)
    texts, x, n = queries(req.texts, req.embeddings, snap)
    names = _candidates(gw, snap, req.candidates)
    if req.lam is not None and req.margin is not None:
        raise ApiError(400, "pass lam or margin, not both")
    if req.cost is not None and req.lam is None and req.margin is None:
        rule = Rule.of(snap.config.routing.lam, snap.config.routing.margin)
        if not rule.needs_cost:
            raise ApiError(
                400, "cost needs a trade-off: lam (P - lam*cost) or margin", param="cost"
            )
    elif req.lam is not None or req.margin is not None:
        rule = Rule.of(req.lam, req.margin)
    else:
        rule = Rule.of(snap.config.routing.lam, snap.config.routing.margin)
    cost = _costs(snap, req, names, texts, n) if rule.needs_cost else None
    p = await gw.score(snap, texts=texts, x=x, arrival=arrival)
    pc = np.ascontiguousarray(p[:, [snap.index[k] for k in names]])
    pick = choose(pc, cost, rule)
    out: dict[str, Any] = {
        "llms": [names[i] for i in pick],
        "p": pc[np.arange(n), pick],
        "model": snap.info(),
    }
    if req.proba:
        out["candidates"] = names
        out["proba"] = pc
    return out


async def predict_accuracy(gw: Gateway, body: Any, arrival: Arrival) -> dict[str, Any]:
    """Answer ``POST /v1/predict_accuracy``: mean P(correct) per LLM (per group).

    Args:
        gw: the gateway.
        body: the parsed JSON body.
        arrival: the request's batcher announcement.

    Returns:
        ``{"accuracy", "n", "model"}``.
    """
    snap = gw.snapshot
    req: AccuracyRequest = validate(AccuracyRequest, body)
    texts, x, n = queries(req.texts, req.embeddings, snap)
    if req.groups is not None and len(req.groups) != n:
        raise ApiError(400, f"{len(req.groups)} group labels for {n} queries", param="groups")
    p = (await gw.score(snap, texts=texts, x=x, arrival=arrival)).astype(np.float64)
    llms = snap.model.llm_names
    if req.groups is None:
        return {
            "accuracy": dict(zip(llms, p.mean(0).tolist(), strict=True)),
            "n": n,
            "model": snap.info(),
        }
    keys: dict[str, list[int]] = {}
    for i, g in enumerate(req.groups):
        keys.setdefault(str(g), []).append(i)
    return {
        "accuracy": {
            g: dict(zip(llms, p[rows].mean(0).tolist(), strict=True)) for g, rows in keys.items()
        },
        "n": {g: len(rows) for g, rows in keys.items()},
        "model": snap.info(),
    }
