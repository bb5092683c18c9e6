"""Head-to-head evaluation of every method on one fixed split, with paired-bootstrap CIs.

    python -m training.evaluate --data DIR --out DIR [--quick] [--seeds N] [--epochs N]

Trains IrtNet, its no-MoE MLP ablation, MF and JE-IRT with the same options on the same split,
exports each to OUT/models/<method>.safetensors and checks that the Rust engine serves it
(max |P_engine − P_torch| on 16 test queries); runs KNN, the per-LLM prior, the single-best
router and the oracle; fits the routing decision rules (training.decision) on validation; and
writes OUT/report.md, OUT/results.json, OUT/split.csv and PNG figures.

Routing is always among the LLMs observed on a query (a missing answer never counts as a
win). Correctness metrics are over observed test pairs. CIs: percentile, over test queries
resampled with replacement; the same resamples for every method, so differences vs IrtNet are
paired.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from training import baselines, decision
from training.metrics import (
    MISSING,
    bootstrap_indices,
    calibration_bins,
    correctness_metrics,
    percentile_ci,
)

NEURAL = ("irtnet", "mlp", "mf", "jeirt")
LABEL = {
    "irtnet": "IrtNet (MoE)",
    "mlp": "MLP (no-MoE ablation)",
    "mf": "MF",
    "jeirt": "JE-IRT",
    "knn": "KNN",
    "prior": "per-LLM prior",
    "single_best": "single-best",
    "oracle": "oracle",
}
EXTRA_MODULES = ("ood", "interpret", "newllm")


# ---------------------------------------------------------------------------------------------
# models


def model_cfg(method: str, embed_dim: int, n_llms: int, quick: bool) -> Any:
    from training.model import IrtNetConfig, mlp_config_matching

    base = "irtnet" if method == "mlp" else method
    if quick:
        cfg = IrtNetConfig(
            method=base, embed_dim=embed_dim, d=8, n_llms=n_llms, hidden_dim=64,
            expert_dim=32, n_shared=1, n_routed=3, dropout=0.1,
        )  # fmt: skip
    else:
        cfg = IrtNetConfig(method=base, embed_dim=embed_dim, n_llms=n_llms)  # paper sizes
    return mlp_config_matching(cfg) if method == "mlp" else cfg


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
    train_override: Any = None,
) -> Any:  # fmt: skip
    from training.fit import TrainOptions, fit_model

    cfg = model_cfg(method, int(ds.embeddings.shape[1]), ds.n_llms, args.quick)
    opts = TrainOptions(
        epochs=args.epochs,
        lr=args.lr,
        batch_queries=args.batch_queries,
        patience=args.patience,
        seed=seed,
        device=args.device,
        progress=False,
    )
    train = mats["train"] if train_override is None else train_override
    return fit_model(cfg, train, mats["val"], opts, val_benchmarks=bench[mats["val"].query_rows])


# ---------------------------------------------------------------------------------------------
# metrics with paired bootstrap


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


BOOT_KEYS = ("accuracy", "auc", "logloss", "ece", "route_micro", "route_macro")


def bootstrap_all(
    entries: dict[str, dict[str, Any]], Y: np.ndarray, bench: np.ndarray, n_boot: int, seed: int,
    ref: str = "irtnet",
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """95% CIs of each metric for each entry and of its difference vs ``ref``, one shared set
    of query resamples (paired)."""
    idx_all = bootstrap_indices(Y.shape[0], n_boot, seed)
    samples = {name: {k: [] for k in BOOT_KEYS} for name in entries}
    for idx in idx_all:
        Yb, bb = Y[idx], bench[idx]
        for name, e in entries.items():
            P = e["P"][idx] if e.get("P") is not None else None
            m = point_metrics(P, Yb, bb, e["choices"][idx])
            for k, v in m.items():
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
# plots


def plot_reliability(entries: dict, Y: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    obs = Y != MISSING
    for name, e in entries.items():
        if e.get("P") is None:
            continue
        b = calibration_bins(Y[obs], e["P"][obs], n_bins=10)
        k = b["count"] > 0
        ax.plot(b["confidence"][k], b["accuracy"][k], "o-", ms=3, label=LABEL.get(name, name))
    ax.set_xlabel("predicted P(correct)")
    ax.set_ylabel("observed accuracy")
    ax.set_title("Reliability (test pairs, 10 bins)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_routing(rows: list[tuple[str, float, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    names = [r[0] for r in rows]
    vals = np.array([r[1] for r in rows])
    lo = np.array([r[2][0] for r in rows])
    hi = np.array([r[2][1] for r in rows])
    err = np.stack([np.nan_to_num(vals - lo), np.nan_to_num(hi - vals)])
    ax.barh(names, vals, xerr=err, color="tab:blue", alpha=0.8)
    ax.set_xlim(max(0.0, float(np.nanmin(lo)) - 0.05), min(1.0, float(np.nanmax(hi)) + 0.02))
    ax.invert_yaxis()
    ax.set_xlabel("routing accuracy (test, micro), 95% bootstrap CI")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curve(curve: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for method, pts in curve.items():
        xs = sorted(int(s) for s in pts)
        for ax, key in zip(axes, ("accuracy", "route_micro"), strict=True):
            m = [np.mean([r[key] for r in pts[str(s)]]) for s in xs]
            sd = [np.std([r[key] for r in pts[str(s)]]) for s in xs]
            ax.errorbar(xs, m, yerr=sd, marker="o", capsize=3, label=LABEL.get(method, method))
    for ax, t in zip(axes, ("test accuracy", "test routing micro"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("training questions")
        ax.set_title(t)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# report


def _f(x: Any, nd: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{nd}f}"


def _ci(c: list[float] | None) -> str:
    return "" if not c else f" [{_f(c[0])}, {_f(c[1])}]"


def render_report(res: dict[str, Any]) -> str:
    L: list[str] = []
    s = res["setup"]
    L.append("# irt_fast evaluation\n")
    L.append(f"Command: `{s['command']}`  ")
    L.append(
        f"Data: `{s['data']}`: {s['n_llms']} LLMs; split train/val/test = "
        f"{s['sizes']['train']['queries']}/{s['sizes']['val']['queries']}/"
        f"{s['sizes']['test']['queries']} queries (test pairs {s['sizes']['test']['pairs']}). "
        f"Seed {s['seed']}; {'QUICK (small models, few epochs)' if s['quick'] else 'full sizes'}; "
        f"epochs ≤ {s['epochs']}, lr {s['lr']}; bootstrap {s['n_boot']} resamples of test "
        f"queries (95% percentile CIs, paired across methods).\n"
    )
    L.append("## Test results\n")
    L.append(
        "| method | accuracy | AUC | log-loss | ECE | routing micro | routing macro | "
        "Δ routing vs IrtNet | pairs | queries |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for name, m in res["methods"].items():
        t, ci = m["test"], m.get("ci", {})
        L.append(
            f"| {LABEL.get(name, name)} | {_f(t.get('accuracy'))}{_ci(ci.get('accuracy'))} | "
            f"{_f(t.get('auc'))}{_ci(ci.get('auc'))} | {_f(t.get('logloss'))} | "
            f"{_f(t.get('ece'))} | {_f(t['route_micro'])}{_ci(ci.get('route_micro'))} | "
            f"{_f(t['route_macro'])}{_ci(ci.get('route_macro'))} | "
            f"{_ci(ci.get('route_micro_diff_vs_irtnet')).strip() or '–'} | "
            f"{m.get('n_pairs') or '–'} | {m['n_queries']} |"
        )
    L.append(
        "\nAccuracy/AUC/log-loss/ECE over observed test pairs (prior, single-best and oracle "
        "have no per-pair predictions beyond the prior). Routing among the LLMs observed on each "
        "query. Δ = paired-bootstrap 95% CI of (method − IrtNet) routing micro.\n"
    )
    tr = res.get("training", {})
    if tr:
        L.append("## Training and engine check\n")
        L.append("| method | params | best epoch / run | s/epoch | engine max abs diff | ok |")
        L.append("|---|---|---|---|---|---|")
        for name, t in tr.items():
            e = t["engine"]
            L.append(
                f"| {LABEL[name]} | {t['n_params']:,} | {t['best_epoch']} / {t['epochs_run']} | "
                f"{_f(t['seconds_per_epoch'], 1)} | {e.get('max_abs_diff', e.get('error'))} | "
                f"{e['ok']} |"
            )
        L.append("")
    knn = res.get("knn", {})
    if knn:
        L.append(
            f"KNN: k = {knn['k']} chosen on validation accuracy "
            f"({', '.join(f'k={k}: {_f(v)}' for k, v in knn['val_accuracy'].items())}).\n"
        )
    dec = res.get("decision_rules", {})
    if dec:
        sb, orc = res["reference"]["single_best"], res["reference"]["oracle"]
        L.append("## Routing decision rules (fitted on validation, applied to test)\n")
        L.append(f"Single-best {_f(sb)}, oracle {_f(orc)} (test routing micro).\n")
        L.append(
            "| method | argmax | shrink (w) | margin (δ) | Platt per-LLM | "
            "gap closed: argmax / shrink / margin / Platt |"
        )
        L.append("|---|---|---|---|---|---|")
        for name, d in dec.items():
            g = d["gap_closed"]
            L.append(
                f"| {LABEL.get(name, name)} | {_f(d['argmax'])} | {_f(d['shrink'])} "
                f"(w={d['shrink_w']}) | {_f(d['margin'])} (δ={d['margin_delta']}) | "
                f"{_f(d['platt'])} | {_f(g['argmax'], 2)} / {_f(g['shrink'], 2)} / "
                f"{_f(g['margin'], 2)} / {_f(g['platt'], 2)} |"
            )
        L.append("")
    pb = res.get("per_benchmark", {})
    if pb:
        names = list(pb)
        benches = sorted({b for v in pb.values() for b in v})
        L.append("## Routing accuracy per benchmark (test)\n")
        L.append("| benchmark | " + " | ".join(LABEL.get(n, n) for n in names) + " |")
        L.append("|---|" + "---|" * len(names))
        for b in benches:
            L.append(f"| {b} | " + " | ".join(_f(pb[n].get(b)) for n in names) + " |")
        L.append("")
    curve = res.get("training_size_curve")
    if curve:
        L.append("## Training-size curve (test; mean ± sd over seeds)\n")
        L.append("| method | train questions | accuracy | routing micro | seeds |")
        L.append("|---|---|---|---|---|")
        for method, pts in curve.items():
            for size in sorted(pts, key=int):
                rs = pts[size]
                a = [r["accuracy"] for r in rs]
                r_ = [r["route_micro"] for r in rs]
                L.append(
                    f"| {LABEL.get(method, method)} | {size} | {_f(np.mean(a))} ± "
                    f"{_f(np.std(a))} | {_f(np.mean(r_))} ± {_f(np.std(r_))} | {len(rs)} |"
                )
        L.append("")
    elif "training_size_curve_note" in res:
        L.append(f"Training-size curve: {res['training_size_curve_note']}\n")
    for mod, sec in res.get("sections", {}).items():
        if not sec.lstrip().startswith("#"):
            L.append(f"## {mod}\n")
        L.append(sec if sec else "(empty section)")
        L.append("")
    L.append("Figures: reliability.png, routing.png" + (", curve.png" if curve else "") + ".\n")
    return "\n".join(L)


# ---------------------------------------------------------------------------------------------
# main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.evaluate", description=__doc__.split("\n")[0]
    )
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quick", action="store_true", help="small models, few epochs, small curve")
    p.add_argument("--seeds", type=int, default=None, help="seeds per training-size point")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="default 1e-4 (paper); --quick 3e-3")
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--batch-queries", type=int, default=64)
    p.add_argument("--seed", type=int, default=0, help="training and bootstrap seed")
    p.add_argument("--split-seed", type=int, default=0, help="0: the fixed reference split")
    p.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples (default 1000)")
    p.add_argument("--methods", default=",".join(NEURAL), help="neural methods to train")
    p.add_argument("--curve-sizes", default=None, help="e.g. 1000,2000,5000,full")
    p.add_argument("--curve-methods", default="irtnet,mf")
    p.add_argument("--skip-curve", action="store_true")
    p.add_argument("--skip-ood", action="store_true")
    p.add_argument("--skip-interpret", action="store_true")
    p.add_argument("--skip-newllm", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.epochs is None:
        args.epochs = 5 if args.quick else 30
    if args.lr is None:
        args.lr = 3e-3 if args.quick else 1e-4
    n_boot = args.n_boot or (200 if args.quick else 1000)
    seeds = args.seeds or (1 if args.quick else 2)
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
    from training.fit import matrices, resolve_device
    from training.model import n_params

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    device = resolve_device(args.device)
    t_start = time.time()
    ds = irt_data.load_dataset(args.data)
    qids = ds.queries["query_id"].to_numpy()
    split = splits.fixed_split(qids, seed=args.split_seed)
    splits.write_split_file(split, out / "split.csv")
    mats = matrices(ds, split)
    bench = ds.queries["benchmark"].to_numpy().astype(str)
    tr, va, te = mats["train"], mats["val"], mats["test"]
    Ytr, Yva, Yte = tr.dense_labels(), va.dense_labels(), te.dense_labels()
    b_te = bench[te.query_rows]
    rank = tr.llm_base_rates(smoothing=1.0)
    prior = baselines.prior_rates(Ytr)

    sizes_opt = args.curve_sizes or ("200,full" if args.quick else "1000,2000,5000,full")
    curve_sizes = [] if args.skip_curve else [s for s in sizes_opt.split(",") if s]
    curve_methods = [m for m in args.curve_methods.split(",") if m]
    extras = [m for m in EXTRA_MODULES if not getattr(args, f"skip_{m}")]
    n_steps = len(methods) + 3 + len(curve_sizes) * len(curve_methods) * seeds + len(extras) + 1
    bar = tqdm(total=n_steps, desc="evaluate", disable=args.quiet, file=sys.stderr)

    res: dict[str, Any] = {
        "setup": {
            "command": "python -m training.evaluate " + " ".join(argv if argv is not None else sys.argv[1:]),
            "data": str(args.data),
            "n_llms": int(ds.n_llms),
            "llm_names": list(ds.llm_names),
            "sizes": {k: {"queries": m.n_queries, "pairs": m.n_pairs} for k, m in mats.items()},
            "seed": args.seed,
            "split_seed": args.split_seed,
            "quick": bool(args.quick),
            "epochs": args.epochs,
            "lr": args.lr,
            "n_boot": n_boot,
            "device": str(device),
        },
        "training": {},
    }  # fmt: skip
    entries: dict[str, dict[str, Any]] = {}
    val_P: dict[str, np.ndarray] = {}
    emb_info = {"name": "precomputed", "dim": int(ds.embeddings.shape[1]), "normalize": True}

    for method in methods:
        bar.set_postfix_str(f"training {method}")
        t0 = time.perf_counter()
        fit = train_neural(method, mats, ds, bench, args, args.seed)
        model = fit.model
        path = out / "models" / f"{method}.safetensors"
        save_model(
            model.cpu(), path, llm_names=list(ds.llm_names), embedder=emb_info,
            training={"seed": args.seed, "method": method, "best_epoch": fit.best_epoch},
        )  # fmt: skip
        model.to(device)
        entries[method] = {"P": dense_P(model, te.emb, device)}
        val_P[method] = dense_P(model, va.emb, device)
        res["training"][method] = {
            "n_params": n_params(model),
            "best_epoch": fit.best_epoch,
            "epochs_run": len(fit.history),
            "seconds_per_epoch": fit.seconds_per_epoch,
            "train_seconds": time.perf_counter() - t0,
            "history": fit.history,
            "engine": engine_check(path, model, te.emb, device),
        }
        bar.update(1)

    bar.set_postfix_str("knn")
    k, scores = baselines.fit_knn(tr.emb, Ytr, va.emb, Yva)
    res["knn"] = {"k": k, "val_accuracy": {str(kk): v for kk, v in scores.items()}}
    entries["knn"] = {"P": baselines.knn_predict(tr.emb, Ytr, te.emb, [k])[k]}
    val_P["knn"] = baselines.knn_predict(tr.emb, Ytr, va.emb, [k])[k]
    bar.update(1)
    entries["prior"] = {"P": baselines.prior_matrix(Ytr, te.n_queries)}
    for e in entries.values():
        e["choices"] = decision.argmax_observed(e["P"], Yte)
    entries["prior"]["choices"] = baselines.single_best_choices(rank, Yte)
    entries["single_best"] = {"P": None, "choices": baselines.single_best_choices(rank, Yte)}
    obs_te = Yte != MISSING
    oracle_choice = np.where(obs_te.any(1), np.argmax(Yte == 1, axis=1), -1)
    oracle_choice = np.where(
        (Yte == 1).any(1), oracle_choice, decision.argmax_observed(np.zeros(Yte.shape), Yte)
    )
    entries["oracle"] = {"P": None, "choices": oracle_choice}

    bar.set_postfix_str("bootstrap")
    ci = bootstrap_all(
        entries, Yte, b_te, n_boot, args.seed, ref="irtnet" if "irtnet" in entries else "knn"
    )
    res["methods"] = {}
    res["per_benchmark"] = {}
    for name, e in entries.items():
        pm = point_metrics(e["P"], Yte, b_te, e["choices"])
        keep = e["choices"] >= 0
        corr = decision.choice_correct(e["choices"], Yte)
        bb = b_te[keep]
        res["per_benchmark"][name] = {g: float(corr[bb == g].mean()) for g in np.unique(bb)}
        res["methods"][name] = {
            "test": pm,
            "ci": ci[name],
            "n_pairs": int(obs_te.sum()) if e["P"] is not None else None,
            "n_queries": int(keep.sum()),
            "n_queries_dropped": int((~keep).sum()),
        }
    bar.update(1)

    sb = res["methods"]["single_best"]["test"]["route_micro"]
    orc = res["methods"]["oracle"]["test"]["route_micro"]
    res["reference"] = {"single_best": sb, "oracle": orc}
    res["decision_rules"] = {}
    for name in [*methods, "knn"]:
        P, Pv = entries[name]["P"], val_P[name]
        sh = decision.fit_shrink(Pv, Yva, prior)
        mg = decision.fit_margin(Pv, Yva, rank)
        pl = decision.fit_platt(Pv, Yva, per_llm=True)
        plg = decision.fit_platt(Pv, Yva, per_llm=False)
        acc = {
            "argmax": decision.routing_accuracy(decision.argmax_observed(P, Yte), Yte),
            "shrink": decision.routing_accuracy(decision.route_shrink(P, Yte, prior, sh["w"]), Yte),
            "margin": decision.routing_accuracy(decision.route_margin(P, Yte, rank, mg["delta"]), Yte),
            "platt": decision.routing_accuracy(decision.route_platt(P, Yte, pl), Yte),
        }  # fmt: skip
        Pc = decision.apply_platt(P, pl)
        res["decision_rules"][name] = {
            **acc,
            "shrink_w": sh["w"],
            "margin_delta": mg["delta"],
            "platt_a": pl["a"].tolist(),
            "platt_b": pl["b"].tolist(),
            "platt_global": [float(plg["a"][0]), float(plg["b"][0])],
            "ece_after_platt": float(correctness_metrics(Yte[obs_te], Pc[obs_te])["ece"]),
            "val_shrink_scores": sh["val_scores"],
            "val_margin_scores": mg["val_scores"],
            "gap_closed": {k: decision.gap_closed(v, sb, orc) for k, v in acc.items()},
        }
    bar.update(1)

    # training-size curve
    if curve_sizes:
        curve: dict[str, dict[str, list]] = {m: {} for m in curve_methods}
        from training.data import build_pair_matrix

        r = ds.responses
        pair_args = (r["q_idx"].to_numpy(), r["llm_idx"].to_numpy(), r["correct"].to_numpy())
        for size in curve_sizes:
            n = tr.n_queries if size == "full" else min(int(size), tr.n_queries)
            for s in range(seeds):
                rows = np.sort(
                    np.random.default_rng(1000 + s).choice(tr.query_rows, n, replace=False)
                )
                sub = build_pair_matrix(ds.embeddings, *pair_args, rows, ds.n_llms)
                for method in curve_methods:
                    bar.set_postfix_str(f"curve {method} n={n} seed={s}")
                    fit = train_neural(
                        method, mats, ds, bench, args, args.seed + s, train_override=sub
                    )
                    P = dense_P(fit.model, te.emb, device)
                    pm = point_metrics(P, Yte, b_te, decision.argmax_observed(P, Yte))
                    curve[method].setdefault(str(n), []).append(
                        {"seed": args.seed + s, "accuracy": pm["accuracy"], "auc": pm["auc"],
                         "route_micro": pm["route_micro"], "route_macro": pm["route_macro"]}
                    )  # fmt: skip
                    bar.update(1)
        res["training_size_curve"] = curve
        plot_curve(curve, out / "curve.png")
    else:
        res["training_size_curve_note"] = "skipped (--skip-curve)"

    # other engineers' experiments
    res["sections"] = {}
    res["extra"] = {}
    for mod in EXTRA_MODULES:
        if mod not in extras:
            res["sections"][mod] = f"not run (--skip-{mod})"
            continue
        bar.set_postfix_str(mod)
        try:
            module = __import__(f"training.{mod}", fromlist=["run"])
        except ImportError as e:
            res["sections"][mod] = f"not run (training.{mod} not available: {e})"
            bar.update(1)
            continue
        try:
            r_ = module.run(ds, split, out, args.quick, args.seed)
            res["sections"][mod] = r_.get("markdown", "")
            res["extra"][mod] = {k: v for k, v in r_.items() if k != "markdown"}
        except Exception as e:  # noqa: BLE001 - one failing experiment must not lose the rest
            res["sections"][mod] = f"FAILED: {type(e).__name__}: {e}"
        bar.update(1)

    plot_reliability(entries, Yte, out / "reliability.png")
    order = sorted(res["methods"], key=lambda n: -res["methods"][n]["test"]["route_micro"])
    plot_routing(
        [(LABEL.get(n, n), res["methods"][n]["test"]["route_micro"],
          res["methods"][n]["ci"].get("route_micro", [np.nan, np.nan])) for n in order],
        out / "routing.png",
    )  # fmt: skip
    res["setup"]["seconds"] = time.time() - t_start
    atomic_write(
        out / "results.json",
        lambda tmp: Path(tmp).write_text(json.dumps(res, indent=2, default=_json_default)),
    )
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(render_report(res)))
    bar.update(1)
    bar.close()
    print(f"wrote {out / 'report.md'}, results.json, split.csv, models/, PNGs", flush=True)
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
