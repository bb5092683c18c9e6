"""Head-to-head evaluation of every method on one fixed split, with paired-bootstrap CIs.

    python -m training.evaluate --data DIR --out DIR [--quick] [--seeds N] [--costs FILE]

Trains IrtNet, its no-MoE MLP ablation, MF and JE-IRT with the same options on the same split,
each with ``--seeds`` training seeds; exports each method's first-seed model to
OUT/models/<method>.safetensors and checks that the Rust engine serves it (max |P_engine −
P_torch| on 16 test queries); runs KNN, the per-LLM prior, the single-best router and the oracle;
fits the routing decision rules (training.decision) on validation; with ``--costs``, traces
accuracy against cost; draws the training-size curve; runs experiments 3–5 (training.ood,
training.interpret, training.newllm); and writes OUT/report.md, OUT/results.json,
OUT/split.csv and PNG figures.

Routing is always among the LLMs observed on a query (a missing answer never counts as a
win). Correctness metrics are over observed test pairs. A method's number is the mean over its
training seeds; its CI is the percentile interval of that seed-mean over test queries resampled
with replacement, the same resamples for every method, so differences vs IrtNet are paired.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from training import baselines, decision
from training.metrics import MISSING, bootstrap_indices, correctness_metrics, percentile_ci
from training.report import (
    label,
    plot_cost_curve,
    plot_curve,
    plot_reliability,
    plot_routing,
    render_report,
)

NEURAL = ("irtnet", "mlp", "mf", "jeirt")
EXTRA_MODULES = ("ood", "interpret", "newllm")


# ---------------------------------------------------------------------------------------------
# models


def model_cfg(method: str, embed_dim: int, n_llms: int, quick: bool) -> Any:
    from training.presets import model_config

    return model_config(method, "small" if quick else "paper", embed_dim=embed_dim, n_llms=n_llms)


def dense_P(model: Any, emb: np.ndarray, device: Any, chunk: int = 4096) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for lo in range(0, emb.shape[0], chunk):
            v = torch.from_numpy(np.ascontiguousarray(emb[lo : lo + chunk])).to(device)
            out.append(model.predict_proba(v).cpu().numpy().astype(np.float64))
    return np.concatenate(out) if out else np.zeros((0, model.cfg.n_llms))


def engine_check(path: Path, model: Any, emb: np.ndarray, device: Any) -> dict[str, Any]:
    """Load the exported file into the Rust engine and compare with torch on 16 queries."""
    x = np.ascontiguousarray(emb[:16], dtype=np.float32)
    p_torch = dense_P(model, x, device)
    try:
        import irt_fast

        eng = irt_fast.load(path)
        p_eng = np.asarray(eng.predict_proba(x), dtype=np.float64)
    except Exception as e:  # noqa: BLE001 - recorded, reported
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "n_queries": int(len(x))}
    diff = float(np.abs(p_eng - p_torch).max()) if x.size else 0.0
    return {"ok": bool(diff < 1e-4), "max_abs_diff": diff, "n_queries": int(len(x))}


def train_neural(
    method: str, mats: dict, ds: Any, bench: np.ndarray, args: argparse.Namespace, seed: int,
    train_override: Any = None, bar: Any = None, what: str = "",
) -> Any:  # fmt: skip
    """Train one method with one seed; ``bar`` (tqdm) shows ``what`` and each epoch's
    validation accuracy."""
    from training.loop import TrainOptions, fit_model

    def on_epoch(rec: dict[str, Any]) -> None:
        if bar is not None:
            acc = rec.get("val_accuracy")
            val = f" val acc {acc:.4f}" if acc is not None else ""
            bar.set_postfix_str(f"{what} epoch {rec['epoch']}/{args.epochs}{val}")

    cfg = model_cfg(method, int(ds.embeddings.shape[1]), ds.n_llms, args.quick)
    opts = TrainOptions(
        epochs=args.epochs,
        lr=args.lr,
        batch_queries=args.batch_queries,
        patience=args.patience,
        seed=seed,
        device=args.device,
        progress=False,
        on_epoch=on_epoch,
    )
    train = mats["train"] if train_override is None else train_override
    return fit_model(cfg, train, mats["val"], opts, val_benchmarks=bench[mats["val"].query_rows])


# ---------------------------------------------------------------------------------------------
# metrics over seeds, with the paired bootstrap


def point_metrics(
    P: np.ndarray | None, Y: np.ndarray, bench: np.ndarray, choices: np.ndarray
) -> dict[str, float]:
    """Correctness (if P is given) and routing micro/macro of ``choices`` on rows of Y."""
    out: dict[str, float] = {}
    if P is not None:
        obs = Y != MISSING
        c = correctness_metrics(Y[obs], P[obs])
        out.update({k: float(v) for k, v in c.items() if k != "n_pairs"})
    keep = choices >= 0
    corr = decision.choice_correct(choices, Y)
    out["route_micro"] = float(corr.mean()) if corr.size else float("nan")
    b = bench[keep]
    out["route_macro"] = float(np.mean([corr[b == g].mean() for g in np.unique(b)]))
    return out


def seed_metrics(
    e: dict[str, Any], Y: np.ndarray, bench: np.ndarray, idx: np.ndarray | None = None
) -> list[dict[str, float]]:
    """``point_metrics`` of each training seed of entry ``e`` (``{"P": [..] | None,
    "choices": [..]}``), on the query rows ``idx`` (all rows when None)."""
    sel = slice(None) if idx is None else idx
    Ps = e["P"] if e.get("P") is not None else [None] * len(e["choices"])
    return [
        point_metrics(None if P is None else P[sel], Y[sel], bench[sel], c[sel])
        for P, c in zip(Ps, e["choices"], strict=True)
    ]


def mean_over_seeds(ms: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([m[k] for m in ms])) for k in ms[0]}


BOOT_KEYS = ("accuracy", "auc", "logloss", "ece", "route_micro", "route_macro")


def bootstrap_all(
    entries: dict[str, dict[str, Any]], Y: np.ndarray, bench: np.ndarray, n_boot: int, seed: int,
    ref: str = "irtnet",
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """95% CIs of each entry's seed-mean metrics and of their difference from ``ref``'s, from
    one shared set of test-query resamples (paired across methods)."""
    idx_all = bootstrap_indices(Y.shape[0], n_boot, seed)
    samples = {name: {k: [] for k in BOOT_KEYS} for name in entries}
    for idx in idx_all:
        for name, e in entries.items():
            for k, v in mean_over_seeds(seed_metrics(e, Y, bench, idx)).items():
                if k in samples[name]:
                    samples[name][k].append(v)
    out: dict[str, dict[str, Any]] = {}
    for name in entries:
        res: dict[str, Any] = {}
        for k, s in samples[name].items():
            if not s:
                continue
            arr = np.asarray(s)
            res[k] = list(percentile_ci(arr))
            if ref in samples and name != ref and len(samples[ref][k]) == len(s):
                res[f"{k}_diff_vs_{ref}"] = list(percentile_ci(arr - np.asarray(samples[ref][k])))
        out[name] = res
    return out


# ---------------------------------------------------------------------------------------------
# decision rules and costs


def decision_rules(
    Ps: list[np.ndarray], Pvs: list[np.ndarray], Yte: np.ndarray, Yva: np.ndarray,
    prior: np.ndarray, rank: np.ndarray, sb: float, orc: float,
) -> dict[str, Any]:  # fmt: skip
    """Each rule fitted on validation and applied to test, per training seed; accuracies are
    means over seeds."""
    per_seed = []
    for P, Pv in zip(Ps, Pvs, strict=True):
        sh = decision.fit_shrink(Pv, Yva, prior)
        mg = decision.fit_margin(Pv, Yva, rank)
        pl = decision.fit_platt(Pv, Yva, per_llm=True)
        obs = Yte != MISSING
        per_seed.append({
            "argmax": decision.routing_accuracy(decision.argmax_observed(P, Yte), Yte),
            "shrink": decision.routing_accuracy(decision.route_shrink(P, Yte, prior, sh["w"]), Yte),
            "margin": decision.routing_accuracy(decision.route_margin(P, Yte, rank, mg["delta"]), Yte),
            "platt": decision.routing_accuracy(decision.route_platt(P, Yte, pl), Yte),
            "shrink_w": sh["w"],
            "margin_delta": mg["delta"],
            "ece_after_platt": float(
                correctness_metrics(Yte[obs], decision.apply_platt(P, pl)[obs])["ece"]
            ),
            "platt_a": pl["a"].tolist(),
            "platt_b": pl["b"].tolist(),
            "val_shrink_scores": sh["val_scores"],
            "val_margin_scores": mg["val_scores"],
        })  # fmt: skip
    rules = ("argmax", "shrink", "margin", "platt")
    out: dict[str, Any] = {k: float(np.mean([s[k] for s in per_seed])) for k in rules}
    out["shrink_w"] = [s["shrink_w"] for s in per_seed]
    out["margin_delta"] = [s["margin_delta"] for s in per_seed]
    out["ece_after_platt"] = float(np.mean([s["ece_after_platt"] for s in per_seed]))
    out["gap_closed"] = {k: decision.gap_closed(out[k], sb, orc) for k in rules}
    out["per_seed"] = per_seed
    return out


BUDGET_FRACTIONS = (0.1, 0.25, 0.5, 1.0)


def cost_section(
    costs: np.ndarray, cost_file: Path, entries: dict[str, dict[str, Any]], Yte: np.ndarray,
    rank: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    """Accuracy against mean cost per query for every method with predictions, the fixed-LLM
    points, the single-best LLM and the cost-aware oracle."""
    grid = decision.lambda_grid(costs)
    curves: dict[str, list[dict[str, float]]] = {}
    for name, e in entries.items():
        if e.get("P") is None or name == "prior":
            continue
        per_seed = [decision.cost_curve(P, Yte, costs, grid) for P in e["P"]]
        curves[name] = [
            {"lam": float(grid[i]),
             "cost": float(np.mean([c[i]["cost"] for c in per_seed])),
             "accuracy": float(np.mean([c[i]["accuracy"] for c in per_seed]))}
            for i in range(len(grid))
        ]  # fmt: skip
    best = int(np.argmax(rank))
    fixed = decision.fixed_llm_points(Yte, costs)
    sb_choice = baselines.single_best_choices(rank, Yte)
    sb = {"llm": best, "cost": decision.mean_cost(sb_choice, costs),
          "accuracy": decision.routing_accuracy(sb_choice, Yte)}  # fmt: skip
    oc = decision.cheapest_correct(Yte, costs)
    budgets = []
    for frac in BUDGET_FRACTIONS:
        b = frac * sb["cost"]
        budgets.append({"fraction": frac, "budget": b,
                        "accuracy": {n: decision.accuracy_at_budget(c, b) for n, c in curves.items()}})  # fmt: skip
    return {
        "file": str(cost_file),
        "costs": costs.tolist(),
        "n_lambdas": len(grid),
        "curves": curves,
        "fixed_llms": fixed,
        "single_best": sb,
        "oracle_cheapest": {
            "cost": decision.mean_cost(oc, costs),
            "accuracy": decision.routing_accuracy(oc, Yte),
        },  # fmt: skip
        "budgets": budgets,
    }


# ---------------------------------------------------------------------------------------------
# main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.evaluate", description=__doc__.split("\n")[0]
    )
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quick", action="store_true", help="small models, few epochs, one seed")
    p.add_argument("--seeds", type=int, default=None,
                   help="training seeds per neural method (default 2, which keeps the full run on "
                        "the shared data under an hour on 2 cores; --quick 1)")  # fmt: skip
    p.add_argument("--curve-seeds", type=int, default=None,
                   help="training seeds per training-size point (default 2; --quick 1)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=None, help="default 30; --quick 5")
    p.add_argument("--lr", type=float, default=None,
                   help="default 3e-4 (the paper's 1e-4 needs ~1.5x the epochs for the same "
                        "test numbers: README); --quick 3e-3")  # fmt: skip
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--batch-queries", type=int, default=64)
    p.add_argument("--seed", type=int, default=0, help="first training seed; bootstrap seed")
    p.add_argument("--split-seed", type=int, default=0, help="0: the fixed reference split")
    p.add_argument("--split", default=None,
                   help="a split table (query_id, split), or 'embedllm': the train/val/test CSVs "
                        "an EmbedLLM-layout --data directory ships (default: the seeded "
                        "80/10/10 split by question)")  # fmt: skip
    p.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples (default 1000)")
    p.add_argument("--methods", default=",".join(NEURAL), help="neural methods to train")
    p.add_argument("--costs", type=Path, default=None,
                   help="table (parquet/csv/jsonl) of model,cost: adds the accuracy-vs-cost curve")  # fmt: skip
    p.add_argument("--curve-sizes", default=None, help="default 1000,2000,full; --quick 200,full")
    p.add_argument("--curve-methods", default="irtnet,mf")
    p.add_argument("--skip-curve", action="store_true")
    p.add_argument("--skip-ood", action="store_true")
    p.add_argument("--skip-interpret", action="store_true")
    p.add_argument("--skip-newllm", action="store_true")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def choose_split(args: argparse.Namespace, ds: Any) -> dict[str, np.ndarray]:
    """The split ``--split`` names (see the flag's help); every part must hold questions."""
    from irt_fast import splits

    if args.split is None:
        split = splits.fixed_split(ds.queries["query_id"].to_numpy(), seed=args.split_seed)
        what = f"the seeded split (seed {args.split_seed})"
    elif args.split == "embedllm":
        d = args.data if args.data.is_dir() else args.data.parent
        split = splits.embedllm_split(d)
        what = f"the split shipped in {d}"
    else:
        split = splits.read_split_file(args.split, ds)
        what = str(args.split)
    empty = [k for k in ("train", "val", "test") if len(split.get(k, [])) == 0]
    if empty:
        raise SystemExit(f"{what}: no {'/'.join(empty)} questions; the evaluation needs all three")
    return split


def _defaults(args: argparse.Namespace) -> None:
    q = args.quick
    for name, quick, full in (
        ("epochs", 5, 30), ("lr", 3e-3, 3e-4), ("n_boot", 200, 1000), ("seeds", 1, 2),
        ("curve_seeds", 1, 2), ("curve_sizes", "200,full", "1000,2000,full"),
    ):  # fmt: skip
        if getattr(args, name) is None:
            setattr(args, name, quick if q else full)
    if args.seeds < 1 or args.curve_seeds < 1:
        raise SystemExit("--seeds and --curve-seeds must be at least 1")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _defaults(args)
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in NEURAL:
            raise SystemExit(f"unknown method {m!r}; choose from {NEURAL}")
    out: Path = args.out
    (out / "models").mkdir(parents=True, exist_ok=True)

    import torch
    from tqdm.auto import tqdm

    from irt_fast import data as irt_data
    from irt_fast import splits
    from training.export import atomic_write, save_model
    from training.loop import resolve_device
    from training.model import n_params
    from training.pairs import matrices

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    device = resolve_device(args.device)
    t_start = time.time()
    timing: dict[str, float] = {}
    ds = irt_data.load_dataset(args.data)
    costs = irt_data.load_costs(args.costs, ds.llm_names) if args.costs else None
    split = choose_split(args, ds)
    splits.write_split_file(split, out / "split.csv")
    mats = matrices(ds, split)
    bench = ds.queries["benchmark"].to_numpy().astype(str)
    tr, va, te = mats["train"], mats["val"], mats["test"]
    Ytr, Yva, Yte = tr.dense_labels(), va.dense_labels(), te.dense_labels()
    b_te = bench[te.query_rows]
    rank = tr.llm_base_rates(smoothing=1.0)
    prior = baselines.prior_rates(Ytr)
    seeds = [args.seed + i for i in range(args.seeds)]
    curve_seeds = [args.seed + i for i in range(args.curve_seeds)]

    curve_sizes = [] if args.skip_curve else [s for s in args.curve_sizes.split(",") if s]
    curve_methods = [m for m in args.curve_methods.split(",") if m]
    extras = [m for m in EXTRA_MODULES if not getattr(args, f"skip_{m}")]
    n_curve = sum(
        len(curve_seeds) for s in curve_sizes for m in curve_methods
        if not (s == "full" and m in methods and set(curve_seeds) <= set(seeds))
    )  # fmt: skip
    n_steps = len(methods) * len(seeds) + 3 + n_curve + len(extras) + 1
    bar = tqdm(total=n_steps, desc="evaluate", disable=args.quiet, file=sys.stderr)

    res: dict[str, Any] = {
        "setup": {
            "command": "python -m training.evaluate " + " ".join(argv if argv is not None else sys.argv[1:]),
            "data": str(args.data),
            "n_llms": int(ds.n_llms),
            "llm_names": list(ds.llm_names),
            "sizes": {k: {"queries": m.n_queries, "pairs": m.n_pairs} for k, m in mats.items()},
            "seed": args.seed,
            "train_seeds": seeds,
            "curve_seeds": curve_seeds,
            "split_seed": args.split_seed,
            "split": args.split or "seeded",
            "quick": bool(args.quick),
            "epochs": args.epochs,
            "lr": args.lr,
            "patience": args.patience,
            "n_boot": args.n_boot,
            "device": str(device),
            "torch_threads": torch.get_num_threads(),
        },
        "training": {},
    }  # fmt: skip
    entries: dict[str, dict[str, Any]] = {}
    val_P: dict[str, list[np.ndarray]] = {}
    emb_info = {"name": "precomputed", "dim": int(ds.embeddings.shape[1]), "normalize": True}

    t0 = time.perf_counter()
    for method in methods:
        Ps, Pvs, runs = [], [], []
        for s in seeds:
            t1 = time.perf_counter()
            fit = train_neural(method, mats, ds, bench, args, s, bar=bar, what=f"{method} seed {s}")
            model = fit.model
            Ps.append(dense_P(model, te.emb, device))
            Pvs.append(dense_P(model, va.emb, device))
            runs.append({
                "seed": s, "best_epoch": fit.best_epoch, "epochs_run": len(fit.history),
                "seconds_per_epoch": fit.seconds_per_epoch,
                "train_seconds": time.perf_counter() - t1, "history": fit.history,
            })  # fmt: skip
            if s == seeds[0]:
                # The first seed's model is exported and served by the Rust engine.
                path = out / "models" / f"{method}.safetensors"
                save_model(
                    model.cpu(), path, llm_names=list(ds.llm_names), embedder=emb_info,
                    training={"seed": s, "method": method, "best_epoch": fit.best_epoch},
                )  # fmt: skip
                model.to(device)
                res["training"][method] = {
                    "n_params": n_params(model),
                    "engine": engine_check(path, model, te.emb, device),
                }
            bar.update(1)
        res["training"][method]["seeds"] = runs
        entries[method] = {"P": Ps}
        val_P[method] = Pvs
    timing["neural methods"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    bar.set_postfix_str("knn")
    k, scores = baselines.fit_knn(tr.emb, Ytr, va.emb, Yva)
    res["knn"] = {"k": k, "val_accuracy": {str(kk): v for kk, v in scores.items()}}
    entries["knn"] = {"P": [baselines.knn_predict(tr.emb, Ytr, te.emb, [k])[k]]}
    val_P["knn"] = [baselines.knn_predict(tr.emb, Ytr, va.emb, [k])[k]]
    bar.update(1)
    entries["prior"] = {"P": [baselines.prior_matrix(Ytr, te.n_queries)]}
    for e in entries.values():
        e["choices"] = [decision.argmax_observed(P, Yte) for P in e["P"]]
    entries["prior"]["choices"] = [baselines.single_best_choices(rank, Yte)]
    entries["single_best"] = {"P": None, "choices": [baselines.single_best_choices(rank, Yte)]}
    obs_te = Yte != MISSING
    oracle_choice = np.where(
        (Yte == 1).any(1), np.argmax(Yte == 1, axis=1), decision.argmax_observed(np.zeros(Yte.shape), Yte)
    )  # fmt: skip
    entries["oracle"] = {"P": None, "choices": [oracle_choice]}
    timing["KNN and reference routers"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    bar.set_postfix_str("bootstrap")
    ref = "irtnet" if "irtnet" in entries else "knn"
    ci = bootstrap_all(entries, Yte, b_te, args.n_boot, args.seed, ref=ref)
    res["methods"] = {}
    res["per_benchmark"] = {}
    for name, e in entries.items():
        per_seed = seed_metrics(e, Yte, b_te)
        keep = e["choices"][0] >= 0
        pb: dict[str, list[float]] = {}
        for c in e["choices"]:
            corr = decision.choice_correct(c, Yte)
            bb = b_te[c >= 0]
            for g in np.unique(bb):
                pb.setdefault(str(g), []).append(float(corr[bb == g].mean()))
        res["per_benchmark"][name] = {g: float(np.mean(v)) for g, v in pb.items()}
        entry: dict[str, Any] = {
            "test": mean_over_seeds(per_seed),
            "ci": ci[name],
            "n_seeds": len(per_seed),
            "n_pairs": int(obs_te.sum()) if e["P"] is not None else None,
            "n_queries": int(keep.sum()),
            "n_queries_dropped": int((~keep).sum()),
        }
        if len(per_seed) > 1:
            entry["seed_sd"] = {k: float(np.std([m[k] for m in per_seed])) for k in per_seed[0]}
            entry["per_seed"] = per_seed
        res["methods"][name] = entry
    bar.update(1)
    timing["bootstrap"] = time.perf_counter() - t0

    sb = res["methods"]["single_best"]["test"]["route_micro"]
    orc = res["methods"]["oracle"]["test"]["route_micro"]
    res["reference"] = {"single_best": sb, "oracle": orc}
    n_obs = obs_te.sum(axis=1)
    res["setup"]["test_candidates"] = {
        "mean": float(n_obs.mean()), "min": int(n_obs.min()), "max": int(n_obs.max()),
        "queries_with_none": int((n_obs == 0).sum()),
    }  # fmt: skip
    res["decision_rules"] = {
        name: decision_rules(entries[name]["P"], val_P[name], Yte, Yva, prior, rank, sb, orc)
        for name in [*methods, "knn"]
    }
    if costs is not None:
        res["cost_curve"] = cost_section(costs, args.costs, entries, Yte, rank)
        plot_cost_curve(res["cost_curve"], list(ds.llm_names), out / "cost_curve.png")
    else:
        res["cost_curve_note"] = "no per-LLM costs given (--costs FILE with columns model,cost)."
    bar.update(1)

    t0 = time.perf_counter()
    if curve_sizes:
        curve: dict[str, dict[str, list]] = {m: {} for m in curve_methods}
        from training.data import build_pair_matrix

        r = ds.responses
        pair_args = (r["q_idx"].to_numpy(), r["llm_idx"].to_numpy(), r["correct"].to_numpy())
        for size in curve_sizes:
            n = tr.n_queries if size == "full" else min(int(size), tr.n_queries)
            for i, s in enumerate(curve_seeds):
                sub = None
                for method in curve_methods:
                    if n == tr.n_queries and method in entries and s in seeds:
                        # the full training set with this seed is a headline run: reuse it
                        pm = seed_metrics(entries[method], Yte, b_te)[seeds.index(s)]
                    else:
                        if sub is None:
                            rows = np.sort(np.random.default_rng(1000 + i).choice(
                                tr.query_rows, n, replace=False))  # fmt: skip
                            sub = build_pair_matrix(ds.embeddings, *pair_args, rows, ds.n_llms)
                        fit = train_neural(
                            method, mats, ds, bench, args, s, train_override=sub, bar=bar,
                            what=f"curve {method} n={n} seed {s}",
                        )  # fmt: skip
                        P = dense_P(fit.model, te.emb, device)
                        pm = point_metrics(P, Yte, b_te, decision.argmax_observed(P, Yte))
                        bar.update(1)
                    curve[method].setdefault(str(n), []).append(
                        {"seed": s, "accuracy": pm["accuracy"], "auc": pm["auc"],
                         "route_micro": pm["route_micro"], "route_macro": pm["route_macro"]}
                    )  # fmt: skip
        res["training_size_curve"] = curve
        plot_curve(curve, out / "curve.png")
    else:
        res["training_size_curve_note"] = "skipped (--skip-curve)"
    timing["training-size curve"] = time.perf_counter() - t0

    res["sections"] = {}
    res["extra"] = {}
    for mod in EXTRA_MODULES:
        if mod not in extras:
            res["sections"][mod] = f"not run (--skip-{mod})"
            continue
        bar.set_postfix_str(mod)
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"training.{mod}")
            r_ = module.run(ds, split, out, args.quick, args.seed)
            res["sections"][mod] = r_.get("markdown", "")
            res["extra"][mod] = {k: v for k, v in r_.items() if k != "markdown"}
        except Exception as e:  # noqa: BLE001 - one failing experiment must not lose the rest
            res["sections"][mod] = f"FAILED: {type(e).__name__}: {e}"
        timing[mod] = time.perf_counter() - t0
        bar.update(1)

    plot_reliability(entries, Yte, out / "reliability.png")
    order = sorted(res["methods"], key=lambda n: -res["methods"][n]["test"]["route_micro"])
    plot_routing(
        [(label(n), res["methods"][n]["test"]["route_micro"],
          res["methods"][n]["ci"].get("route_micro", [np.nan, np.nan])) for n in order],
        out / "routing.png",
    )  # fmt: skip
    res["setup"]["seconds"] = time.time() - t_start
    res["setup"]["timing"] = timing
    atomic_write(
        out / "results.json",
        lambda tmp: Path(tmp).write_text(json.dumps(res, indent=2, default=_json_default)),
    )
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(render_report(res)))
    bar.update(1)
    bar.close()
    print(f"wrote {out / 'report.md'}, results.json, split.csv, models/, PNGs "
          f"({res['setup']['seconds'] / 60:.1f} min)", flush=True)  # fmt: skip
    return 0


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
