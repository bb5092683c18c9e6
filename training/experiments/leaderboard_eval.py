"""Leaderboard-shaped comparison: IrtNet with the data-chosen recipe against the old
recipe, MF, KNN, the free-item 2PL and the per-LLM prior, with paired bootstrap CIs.

    python -m training.experiments.leaderboard_eval --out docs/results/leaderboard [--n-llms 6000]
        [--n-queries 1000] [--epochs 30] [--n-boot 1000] [--methods ...]

Data: ``irt_fast.synthetic.make_leaderboard`` (families, benchmark skills, weak LLMs near a
guessing floor, whole benchmarks missing, ~75% observed; ``--generator synthetic``:
``make_synthetic``, for the other shape: few LLMs, many questions, e.g. 11 × 3,000), split by
question 70/10/20 (``irt_fast.splits.fixed_split``). Correctness metrics are over every
observed test pair; routing is among the LLMs answered on every test question (argmax of P
among them). Writes
``report.md``, ``results.json`` and ``comparison.png`` into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from training.numerics import flushing_denormals

METHODS = ("irtnet", "irtnet_old", "mf", "mf_old", "knn", "irt2pl", "prior")
DEFAULT_METHODS = tuple(m for m in METHODS if m != "mf_old")
LABELS = {
    "irtnet": "IrtNet, data-chosen recipe",
    "irtnet_old": "IrtNet, old recipe (lr 1e-4, accuracy stopping, paper sizes)",
    "mf": "MF (EmbedLLM), data-chosen recipe",
    "mf_old": "MF (EmbedLLM), old recipe",
    "knn": "KNN (k on validation)",
    "irt2pl": "free-item 2PL IRT (k-NN item parameters)",
    "prior": "per-LLM prior",
    "truth": "true probabilities (the generator's: the ceiling)",
}


def train_irtnet(method: str, mats: dict, n_llms: int, embed_dim: int, old: bool, args: Any,
                 log: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:  # fmt: skip
    """Train ``method`` with the data-chosen (or the old) recipe; dense P on test and val."""
    import torch

    from training import defaults
    from training.loop import TrainOptions, fit_model
    from training.presets import model_config

    tr = mats["train"]
    shape = defaults.Shape(tr.n_queries, n_llms, tr.n_pairs)
    preset = defaults.old_recipe()["preset"] if old else defaults.choose_preset(shape)
    cfg = model_config(method, preset.value, embed_dim=embed_dim, n_llms=n_llms)

    def on_epoch(rec: dict[str, Any]) -> None:
        log(f"  {method}{' (old)' if old else ''} epoch {rec['epoch']}: val logloss "
            f"{rec.get('val_logloss', float('nan')):.4f} accuracy "
            f"{rec.get('val_accuracy', float('nan')):.4f} lr {rec['lr']:.2g}")  # fmt: skip

    # lr and the stopping metric are left to the loop (training.defaults via resolve_recipe)
    opts = TrainOptions(
        epochs=args.epochs, old_recipe=old, seed=args.seed, device="cpu", progress=False,
        on_epoch=on_epoch,
    )  # fmt: skip
    t0 = time.perf_counter()
    fit = fit_model(cfg, tr, mats["val"], opts)
    secs = time.perf_counter() - t0
    out = []
    with torch.no_grad():
        for m in (mats["test"], mats["val"]):
            out.append(torch.sigmoid(fit.model.logits(torch.from_numpy(m.emb))).double().numpy())
    info = {
        "recipe": {**fit.recipe, "choices": {**fit.recipe["choices"], "preset": asdict(preset)}},
        "best_epoch": fit.best_epoch,
        "epochs_run": len(fit.history),
        "train_seconds": secs,
        "history": fit.history,
    }
    return out[0], out[1], info


def routing_outcomes(P: np.ndarray, Y: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """0/1 per test question: is the argmax-P LLM among ``cols`` correct on it."""
    choice = np.argmax(P[:, cols], axis=1)
    return (Y[:, cols][np.arange(len(choice)), choice] == 1).astype(np.float64)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from irt_fast.splits import fixed_split
    from irt_fast.synthetic import make_leaderboard, make_synthetic
    from training.evaluation import baselines
    from training.evaluation.irt2pl import irt2pl_predictions
    from training.experiments.leaderboard_boot import paired_bootstrap
    from training.fit import matrices
    from training.metrics import MISSING

    torch.set_num_threads(max(1, min(args.threads, 2, os.cpu_count() or 1)))

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    make = make_leaderboard if args.generator == "leaderboard" else make_synthetic
    ds, truth = make(n_llms=args.n_llms, n_queries=args.n_queries, seed=args.data_seed)
    split = fixed_split(ds.queries["query_id"].to_numpy(), (0.7, 0.1, 0.2), seed=args.data_seed)
    mats = matrices(ds, split)
    tr, va, te = mats["train"], mats["val"], mats["test"]
    Ytr, Yva, Yte = tr.dense_labels(), va.dense_labels(), te.dense_labels()
    cols = (Yte != MISSING).all(axis=0)
    log(f"{ds.source}: {tr.n_queries}/{va.n_queries}/{te.n_queries} questions, "
        f"{te.n_pairs} test pairs, {int(cols.sum())} LLMs answered every test question")  # fmt: skip
    P: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {}
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}; choose from {METHODS}")
        t0 = time.perf_counter()
        log(f"{m} …")
        if m in ("irtnet", "irtnet_old", "mf", "mf_old"):
            net = "mf" if m.startswith("mf") else "irtnet"
            P[m], _, info[m] = train_irtnet(
                net, mats, ds.n_llms, ds.embeddings.shape[1], m.endswith("_old"), args, log
            )
        elif m == "knn":
            k, scores = baselines.fit_knn(tr.emb, Ytr, va.emb, Yva)
            P[m] = baselines.knn_predict(tr.emb, Ytr, te.emb, [k])[k]
            info[m] = {"k": k, "val_accuracy_by_k": {str(a): b for a, b in scores.items()}}
        elif m == "irt2pl":
            P[m], _, info[m] = irt2pl_predictions(tr, va, te, seed=args.seed)
        else:
            P[m] = baselines.prior_matrix(Ytr, te.n_queries)
        info.setdefault(m, {})["seconds"] = time.perf_counter() - t0
        log(f"{m} done in {info[m]['seconds']:.0f} s")
    P["truth"] = truth.prob[:, te.query_rows].T  # what no method can beat on average
    info["truth"] = {"seconds": 0.0}
    obs = Yte != MISSING
    qi, li = np.nonzero(obs)
    routed = {m: routing_outcomes(p, Yte, cols) for m, p in P.items() if m != "prior"}
    rank = tr.llm_base_rates(smoothing=1.0)
    routed["single_best"] = routing_outcomes(np.broadcast_to(rank, Yte.shape), Yte, cols)
    routed["oracle"] = (Yte[:, cols] == 1).any(axis=1).astype(np.float64)
    ref = "irtnet" if "irtnet" in P else methods[0]
    log(f"paired bootstrap ({args.n_boot} resamples of the test questions) …")
    table = paired_bootstrap(
        qi, Yte[qi, li], {m: p[qi, li] for m, p in P.items()}, routed, te.n_queries,
        n_boot=args.n_boot, seed=args.seed, ref=ref,
    )  # fmt: skip
    if "knn" in table and ref != "knn":
        knn = paired_bootstrap(
            qi, Yte[qi, li], {m: P[m][qi, li] for m in (ref, "knn")},
            {m: routed[m] for m in (ref, "knn")}, te.n_queries,
            n_boot=args.n_boot, seed=args.seed, ref="knn",
        )  # fmt: skip
        table[ref]["diff_vs_knn"] = knn[ref]["diff_vs_knn"]
    return {
        "setup": {
            "command": "python -m training.experiments.leaderboard_eval " + " ".join(args.argv),
            "data": ds.source,
            "n_llms": ds.n_llms,
            "sizes": {k: {"queries": m.n_queries, "pairs": m.n_pairs} for k, m in mats.items()},
            "routing_llms": int(cols.sum()),
            "n_boot": args.n_boot,
            "threads": args.threads,
            "epochs": args.epochs,
            "seconds": time.perf_counter() - t_start,
            "note": "timings from a shared, busy 2-core machine: not speed measurements",
        },
        "ref": ref,
        "methods": table,
        "info": info,
    }


def _fmt(x: float, ci: list[float] | None = None) -> str:
    return f"{x:.4f}" if ci is None else f"{x:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]"


def render(res: dict[str, Any]) -> str:
    s, ref = res["setup"], res["ref"]
    lines = [
        "# Leaderboard-shaped synthetic data: IrtNet against classical baselines",
        "",
        f"Data: `{s['data']}`; questions train/val/test "
        + "/".join(str(v["queries"]) for v in s["sizes"].values())
        + f"; {s['sizes']['test']['pairs']} observed test pairs. Routing is among the "
        f"{s['routing_llms']} LLMs answered on every test question. 95% CIs from {s['n_boot']} "
        "paired bootstrap resamples of the test questions.",
        "",
        "| method | accuracy | AUC | log-loss | routing |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in res["methods"].items():
        e, ci = r["estimate"], r["ci"]
        cells = [
            _fmt(e[k], ci.get(k)) if k in e else "" for k in ("accuracy", "auc", "logloss", "route")
        ]
        lines.append(f"| {LABELS.get(name, name.replace('_', ' '))} | " + " | ".join(cells) + " |")
    lines += ["", f"Differences from `{ref}` (method − {ref}), 95% CI:", "",
              "| method | accuracy | AUC | log-loss | routing |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in res["methods"].items():
        for key, label in ((f"diff_vs_{ref}", name), ("diff_vs_knn", f"{ref} − knn")):
            d = r.get(key, {})
            if not d:
                continue
            cells = [
                _fmt(d[k]["estimate"], d[k]["ci"]) if k in d else ""
                for k in ("accuracy", "auc", "logloss", "route")
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Training:", ""]
    for name, i in res["info"].items():
        if name == "truth":
            continue
        extra = ""
        if "recipe" in i:
            ch = i["recipe"]["choices"]
            extra = (f": lr {ch['lr']['value']:g}, stop on {ch['stop_metric']['value']}, "
                     f"{ch['preset']['value']} sizes; best epoch {i['best_epoch']} of {i['epochs_run']}")  # fmt: skip
        elif "k" in i:
            extra = f": k = {i['k']}"
        lines.append(f"- {name}{extra}; {i['seconds'] / 60:.1f} min")
    lines += ["", f"Total {s['seconds'] / 60:.1f} min. {s['note']}.", "",
              f"Command: `{s['command']}`", ""]  # fmt: skip
    return "\n".join(lines)


def plot(res: dict[str, Any], path: Path) -> None:
    from training.evaluation.plots import figure

    names = [n for n in res["methods"] if n not in ("oracle",)]
    with figure(path, 1, 3, figsize=(14, 4)) as (_, axes):
        for ax, key in zip(axes, ("accuracy", "auc", "route"), strict=True):
            rows = [(n, res["methods"][n]) for n in names if key in res["methods"][n]["estimate"]]
            y = np.arange(len(rows))
            est = np.array([r["estimate"][key] for _, r in rows])
            lo = np.array([r["ci"][key][0] for _, r in rows])
            hi = np.array([r["ci"][key][1] for _, r in rows])
            ax.barh(y, est, xerr=[est - lo, hi - est], color="tab:blue", alpha=0.7)
            ax.set_yticks(y, [n for n, _ in rows])
            ax.set_xlim(max(0.0, lo.min() - 0.03), min(1.0, hi.max() + 0.02))
            ax.set_title({"route": "routing accuracy"}.get(key, key))
            ax.invert_yaxis()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.experiments.leaderboard_eval",
                                description=__doc__.split("\n")[0])  # fmt: skip
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--generator",
        choices=["leaderboard", "synthetic"],
        default="leaderboard",
        help="make_leaderboard (default) or make_synthetic (few LLMs, many questions)",
    )
    p.add_argument("--n-llms", type=int, default=6000)
    p.add_argument("--n-queries", type=int, default=1000)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--seed", type=int, default=0, help="training and bootstrap seed")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="most epochs (default: from the data, training.defaults)",
    )
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated, from {', '.join(METHODS)} (default: all but mf_old)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads (at most 2)")
    return p


@flushing_denormals
def main(argv: list[str] | None = None) -> int:
    from training.export import atomic_write

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    args.out.mkdir(parents=True, exist_ok=True)
    res = run(args)
    atomic_write(args.out / "results.json",
                 lambda t: Path(t).write_text(json.dumps(res, indent=2, default=float)))  # fmt: skip
    atomic_write(args.out / "report.md", lambda t: Path(t).write_text(render(res)))
    plot(res, args.out / "comparison.png")
    print(render(res), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
