"""The trained models the onboarding evaluation onboards into, one per fold of LLMs, cached.

Two protocols split the LLMs of a dataset into trained and onboarded ones:

- ``"random"`` (protocol a): the LLMs in ``n_folds`` seeded folds; per fold a model is trained
  without the fold and the fold's LLMs are onboarded (every LLM once);
- ``"extrapolate"`` (protocol b): one model trained on the weaker half of the LLMs by accuracy,
  the strongest 30% onboarded (new LLMs unlike every trained one).

A fold model is an IrtNet of a named preset trained with the data-chosen recipe
(``training.loop.fit_model``), one torch thread. What the evaluation needs of it is small: α, β
of every question of the dataset and (θ, b) of the trained LLMs. That is cached as an ``.npz``
under a key of everything that determines it (dataset, split, trained LLMs, preset, seed, epoch
cap), so every estimator run after the first reuses the trainings.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROTOCOLS = ("random", "extrapolate")
WEAK_HALF = 0.5  # protocol b: share of LLMs (the weakest) trained on
STRONG_SHARE = 0.3  # protocol b: share of LLMs (the strongest) onboarded


@dataclass
class FoldModel:
    """One trained model's item parameters and trained population.

    Attributes:
        alpha: float64 ``[n_queries, d]`` α of every dataset question (dataset row order).
        beta: float64 ``[n_queries]``.
        theta: float64 ``[n_trained, d]`` θ of the trained LLMs (``trained`` order).
        bias: float64 ``[n_trained]`` offsets b, or None (no offsets).
        trained: int ``[n_trained]`` dataset LLM indices the model was trained on.
        onboard: int dataset LLM indices to onboard into it.
        config: the model config (JSON dict).
        seconds: training time (0 when read from the cache).
    """

    alpha: np.ndarray
    beta: np.ndarray
    theta: np.ndarray
    bias: np.ndarray | None
    trained: np.ndarray
    onboard: np.ndarray
    config: dict[str, Any]
    seconds: float = 0.0


def llm_accuracy(ds: Any) -> np.ndarray:
    """Each LLM's accuracy over all its answers."""
    r = ds.responses
    llm = r["llm_idx"].to_numpy()
    y = r["correct"].to_numpy().astype(np.float64)
    return np.bincount(llm, weights=y, minlength=ds.n_llms) / np.maximum(
        np.bincount(llm, minlength=ds.n_llms), 1
    )


def protocol_folds(
    ds: Any, protocol: str, n_folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(trained LLM indices, onboarded LLM indices) per fold of ``protocol``."""
    n = ds.n_llms
    if protocol == "random":
        fold_of = np.random.default_rng(seed).permutation(np.arange(n) % n_folds)
        return [
            (np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(n_folds)
        ]
    if protocol == "extrapolate":
        order = np.argsort(llm_accuracy(ds), kind="stable")  # weakest first
        n_weak = int(np.floor(WEAK_HALF * n))
        n_strong = max(1, int(round(STRONG_SHARE * n)))
        return [(np.sort(order[:n_weak]), np.sort(order[n - n_strong :]))]
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def _key(ds: Any, split: dict[str, np.ndarray], trained: np.ndarray, preset: str, seed: int,
         epochs: int | None) -> str:  # fmt: skip
    h = hashlib.sha256()
    for part in (ds.source, preset, seed, epochs, ds.n_llms, ds.n_queries):
        h.update(repr(part).encode())
    for arr in (np.asarray(trained, np.int64), *(np.asarray(split[p]) for p in ("train", "val"))):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def fold_model(
    ds: Any,
    split: dict[str, np.ndarray],
    trained: np.ndarray,
    onboard: np.ndarray,
    *,
    preset: str,
    seed: int,
    cache_dir: Path,
    epochs: int | None = None,
    log: Any = print,
) -> FoldModel:
    """The model trained on ``trained`` LLMs only (training questions of ``split``, validation
    on its val questions), from ``cache_dir`` when it was trained before."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"fold_{_key(ds, split, trained, preset, seed, epochs)}.npz"
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        return FoldModel(
            alpha=z["alpha"],
            beta=z["beta"],
            theta=z["theta"],
            bias=None if z["bias"].size == 0 else z["bias"],
            trained=z["trained"],
            onboard=np.asarray(onboard),
            config=json.loads(str(z["config"])),
        )
    t0 = time.perf_counter()
    alpha, beta, theta, bias, cfg = _train(ds, split, trained, preset, seed, epochs, log)
    secs = time.perf_counter() - t0
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        alpha=alpha,
        beta=beta,
        theta=theta,
        bias=np.zeros(0) if bias is None else bias,
        trained=np.asarray(trained, np.int64),
        config=json.dumps(cfg),
    )
    tmp.replace(path)
    log(f"  trained on {len(trained)} LLMs in {secs / 60:.1f} min -> {path.name}")
    return FoldModel(alpha, beta, theta, bias, np.asarray(trained), np.asarray(onboard), cfg, secs)


def _drop_llms(m: Any, drop: np.ndarray) -> Any:
    """The pair matrix ``m`` (training.data.PairMatrix) without the pairs of the LLMs ``drop``."""
    from training.data import PairMatrix

    keep = ~np.isin(m.llm, drop)
    q = m.query_of_pair()[keep]
    ptr = np.concatenate(([0], np.cumsum(np.bincount(q, minlength=m.n_queries)))).astype(np.int64)
    return PairMatrix(m.emb, ptr, m.llm[keep], m.y[keep], m.query_rows, m.n_llms)


def _train(
    ds: Any,
    split: dict[str, np.ndarray],
    trained: np.ndarray,
    preset: str,
    seed: int,
    epochs: int | None,
    log: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, dict[str, Any]]:
    import torch

    from training.loop import TrainOptions, fit_model
    from training.pairs import matrices
    from training.presets import model_config

    torch.set_num_threads(1)
    mats = matrices(ds, split)
    drop = np.setdiff1d(np.arange(ds.n_llms), trained)
    train, val = _drop_llms(mats["train"], drop), _drop_llms(mats["val"], drop)
    cfg = model_config("irtnet", preset, embed_dim=int(ds.embeddings.shape[1]), n_llms=ds.n_llms)

    def on_epoch(rec: dict[str, Any]) -> None:
        log(
            f"    epoch {rec['epoch']}: val logloss {rec.get('val_logloss', float('nan')):.4f} "
            f"AUC {rec.get('val_auc', float('nan')):.4f} ({rec['seconds']:.0f} s)"
        )

    opts = TrainOptions(epochs=epochs, seed=seed, device="cpu", progress=False, on_epoch=on_epoch)
    model = fit_model(cfg, train, val if val.n_pairs else None, opts).model.eval()
    with torch.no_grad():
        a, b = model.item_params(torch.from_numpy(np.ascontiguousarray(ds.embeddings)))
        theta = model.theta.detach().double().numpy()[trained]
        bias = None if model.llm_bias is None else model.llm_bias.detach().double().numpy()
    return (
        a.double().numpy(),
        b.double().numpy(),
        theta,
        None if bias is None else bias[trained],
        model.cfg.to_json(),
    )


LEADERBOARD = "leaderboard"  # --data value: the synthetic leaderboard preset


def load_data(spec: str, *, n_llms: int = 6000, n_queries: int = 1000) -> tuple[Any, dict, str]:
    """(dataset, split by question, short name) for ``spec``: a dataset directory (split
    80/10/10, ``irt_fast.splits.fixed_split`` seed 0) or ``"leaderboard"``
    (``irt_fast.synthetic.make_leaderboard`` seed 0, split 70/10/20 as training.leaderboard_eval)."""
    from irt_fast.splits import fixed_split

    if spec == LEADERBOARD:
        from irt_fast.synthetic import make_leaderboard

        ds, _ = make_leaderboard(n_llms=n_llms, n_queries=n_queries, seed=0)
        ids = ds.queries["query_id"].to_numpy()
        return ds, fixed_split(ids, (0.7, 0.1, 0.2), seed=0), f"leaderboard{n_llms}x{n_queries}"
    from irt_fast.data import load_dataset

    ds = load_dataset(spec)
    return ds, fixed_split(ds.queries["query_id"].to_numpy(), seed=0), Path(spec).name


def main(argv: list[str] | None = None) -> int:
    """``python -m training.experiments.onboard_folds --data DIR|leaderboard --cache DIR``: train (or find in
    the cache) every fold model of both protocols, so later evaluation runs only read them."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m training.experiments.onboard_folds")
    p.add_argument("--data", required=True, help="dataset directory, or 'leaderboard'")
    p.add_argument("--cache", type=Path, default=Path("/tmp/onboard_cache"))
    p.add_argument("--preset", default="reduced")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--protocols", default=",".join(PROTOCOLS))
    args = p.parse_args(argv)
    ds, split, name = load_data(args.data)
    for protocol in args.protocols.split(","):
        for f, (tr, ob) in enumerate(protocol_folds(ds, protocol, args.folds, args.seed)):
            print(f"{name} {protocol} fold {f}: {len(tr)} trained, {len(ob)} onboarded", flush=True)
            fold_model(ds, split, tr, ob, preset=args.preset, seed=args.seed,
                       cache_dir=args.cache, log=lambda m: print(m, flush=True))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
