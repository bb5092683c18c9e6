"""The phases of ``python -m training.evaluate``, in the order ``main`` runs them, over one shared
``EvalRun`` (data, split matrices, labels, the results being built):

1. ``train_methods``: every neural method over the training seeds; export + engine check.
2. ``reference_routers``: KNN, the per-LLM prior, the single-best router, the oracle.
3. ``summarize``: per-method test metrics, paired bootstrap CIs, per-benchmark routing.
4. ``rules_and_costs``: decision rules fitted on validation; the accuracy-vs-cost curve.
5. ``size_curve``: the training-size curve (headline runs reused).
6. ``studies``: the studies the caller hands in (``python -m training.evaluate`` hands in
   training.experiments.ood and .interpret), each adding a report section.
7. ``write_outputs``: figures, results.json, report.md.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluation import baselines, decision
from training.evaluation.irt2pl import irt2pl_predictions
from training.evaluation.report import (
    label,
    plot_cost_curve,
    plot_curve,
    plot_reliability,
    plot_routing,
    render_report,
)
from training.evaluation.rules import cost_section, decision_rules
from training.evaluation.stats import bootstrap_all, mean_over_seeds, point_metrics, seed_metrics
from training.metrics import MISSING, route_choices
from training.presets import model_config

# A study: run(ds, split, out_dir, quick, seed) -> results with a "markdown" section. The suite
# takes them from its caller, so training.evaluation never imports training.experiments.
Study = Callable[..., dict[str, Any]]


@dataclass
class EvalRun:
    """Everything the phases share. ``entries[name]`` holds a method's test predictions
    ``"P"`` (one per seed, or None) and routing ``"choices"``; ``res`` is results.json."""

    args: argparse.Namespace
    out: Path
    ds: Any
    split: dict[str, np.ndarray]
    mats: dict[str, Any]
    device: Any
    bar: Any
    seeds: list[int]
    res: dict[str, Any]
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    val_P: dict[str, list[np.ndarray]] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bench = self.ds.queries["benchmark"].to_numpy().astype(str)
        self.tr, self.va, self.te = self.mats["train"], self.mats["val"], self.mats["test"]
        self.Ytr, self.Yva = self.tr.dense_labels(), self.va.dense_labels()
        self.Yte = self.te.dense_labels()
        self.b_te = self.bench[self.te.query_rows]
        self.rank = self.tr.llm_base_rates(smoothing=1.0)
        self.prior = baselines.prior_rates(self.Ytr)

    def timed(self, name: str, t0: float) -> None:
        self.timing[name] = time.perf_counter() - t0


def dense_P(model: Any, emb: np.ndarray, device: Any, chunk: int = 4096) -> np.ndarray:
    """P(correct) ``[n_queries, n_llms]`` (float64) for the embeddings ``emb``."""
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


def train_neural(run: EvalRun, method: str, seed: int, train: Any = None, what: str = "") -> Any:
    """Train one method with one seed (on ``train``, default the split's training matrix); the
    progress bar shows ``what`` and each epoch's validation accuracy."""
    from training import defaults
    from training.loop import TrainOptions, fit_model

    args, bar = run.args, run.bar

    def on_epoch(rec: dict[str, Any]) -> None:
        if bar is not None:
            acc = rec.get("val_accuracy")
            val = f" val acc {acc:.4f}" if acc is not None else ""
            bar.set_postfix_str(f"{what} epoch {rec['epoch']}{val}")

    # The item-network size as training.fit chooses it (the paper's on MMLU-Pro).
    shape = defaults.Shape(run.tr.n_queries, run.ds.n_llms, run.tr.n_pairs, args.batch_queries)
    preset = "small" if args.quick else defaults.choose_preset(shape).value
    cfg = model_config(
        method, preset, embed_dim=int(run.ds.embeddings.shape[1]), n_llms=run.ds.n_llms
    )
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
    val_b = run.bench[run.va.query_rows]
    train = run.tr if train is None else train
    return fit_model(cfg, train, run.va, opts, val_benchmarks=val_b)


def train_methods(run: EvalRun, methods: list[str]) -> None:
    from training.export import save_model
    from training.model import n_params

    t0 = time.perf_counter()
    emb_info = {"name": "precomputed", "dim": int(run.ds.embeddings.shape[1]), "normalize": True}
    for method in methods:
        Ps, Pvs, runs = [], [], []
        for s in run.seeds:
            t1 = time.perf_counter()
            fit = train_neural(run, method, s, what=f"{method} seed {s}")
            model = fit.model
            Ps.append(dense_P(model, run.te.emb, run.device))
            Pvs.append(dense_P(model, run.va.emb, run.device))
            runs.append({
                "seed": s, "best_epoch": fit.best_epoch, "epochs_run": len(fit.history),
                "seconds_per_epoch": fit.seconds_per_epoch,
                "train_seconds": time.perf_counter() - t1, "history": fit.history,
                "recipe": fit.recipe,
            })  # fmt: skip
            if s == run.seeds[0]:
                # The first seed's model is exported and served by the Rust engine.
                path = run.out / "models" / f"{method}.safetensors"
                save_model(
                    model.cpu(), path, llm_names=list(run.ds.llm_names), embedder=emb_info,
                    training={"seed": s, "method": method, "best_epoch": fit.best_epoch,
                              "recipe": fit.recipe},
                    n_answers=np.bincount(run.tr.llm, minlength=len(run.ds.llm_names)).tolist(),
                )  # fmt: skip
                model.to(run.device)
                run.res["training"][method] = {
                    "n_params": n_params(model),
                    "engine": engine_check(path, model, run.te.emb, run.device),
                }
            run.bar.update(1)
        run.res["training"][method]["seeds"] = runs
        run.entries[method] = {"P": Ps}
        run.val_P[method] = Pvs
    run.timed("neural methods", t0)


def reference_routers(run: EvalRun) -> None:
    t0 = time.perf_counter()
    tr, va, te, Ytr, Yte = run.tr, run.va, run.te, run.Ytr, run.Yte
    run.bar.set_postfix_str("knn")
    k, scores = baselines.fit_knn(tr.emb, Ytr, va.emb, run.Yva)
    run.res["knn"] = {"k": k, "val_accuracy": {str(kk): v for kk, v in scores.items()}}
    run.entries["knn"] = {"P": [baselines.knn_predict(tr.emb, Ytr, te.emb, [k])[k]]}
    run.val_P["knn"] = [baselines.knn_predict(tr.emb, Ytr, va.emb, [k])[k]]
    run.bar.update(1)
    # The classical baseline for this shape: free per-question 2PL on the training questions,
    # unseen questions take the item parameters of their nearest training questions.
    run.bar.set_postfix_str("free-item 2PL")
    P2, Pv2, info2 = irt2pl_predictions(tr, va, te, seed=run.args.seed)
    run.res["irt2pl"] = info2
    run.entries["irt2pl"] = {"P": [P2]}
    run.val_P["irt2pl"] = [Pv2]
    run.entries["prior"] = {"P": [baselines.prior_matrix(Ytr, te.n_queries)]}
    for e in run.entries.values():
        e["choices"] = [route_choices(P, Yte) for P in e["P"]]
    sb = baselines.single_best_choices(run.rank, Yte)
    run.entries["prior"]["choices"] = [sb]
    run.entries["single_best"] = {"P": None, "choices": [sb]}
    fallback = route_choices(np.zeros(Yte.shape), Yte)
    oracle_choice = np.where((Yte == 1).any(1), np.argmax(Yte == 1, axis=1), fallback)
    run.entries["oracle"] = {"P": None, "choices": [oracle_choice]}
    run.timed("KNN and reference routers", t0)


def summarize(run: EvalRun) -> None:
    t0 = time.perf_counter()
    run.bar.set_postfix_str("bootstrap")
    Yte, b_te, res = run.Yte, run.b_te, run.res
    ref = "irtnet" if "irtnet" in run.entries else "knn"
    ci = bootstrap_all(run.entries, Yte, b_te, run.args.n_boot, run.args.seed, ref=ref)
    res["methods"], res["per_benchmark"] = {}, {}
    n_pairs = int((Yte != MISSING).sum())
    for name, e in run.entries.items():
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
            "n_pairs": n_pairs if e["P"] is not None else None,
            "n_queries": int(keep.sum()),
            "n_queries_dropped": int((~keep).sum()),
        }
        if len(per_seed) > 1:
            entry["seed_sd"] = {k: float(np.std([m[k] for m in per_seed])) for k in per_seed[0]}
            entry["per_seed"] = per_seed
        res["methods"][name] = entry
    run.bar.update(1)
    run.timed("bootstrap", t0)


def rules_and_costs(run: EvalRun, methods: list[str], costs: np.ndarray | None) -> None:
    res, Yte = run.res, run.Yte
    sb = res["methods"]["single_best"]["test"]["route_micro"]
    orc = res["methods"]["oracle"]["test"]["route_micro"]
    res["reference"] = {"single_best": sb, "oracle": orc}
    n_obs = (Yte != MISSING).sum(axis=1)
    res["setup"]["test_candidates"] = {
        "mean": float(n_obs.mean()), "min": int(n_obs.min()), "max": int(n_obs.max()),
        "queries_with_none": int((n_obs == 0).sum()),
    }  # fmt: skip
    res["decision_rules"] = {
        name: decision_rules(
            run.entries[name]["P"], run.val_P[name], Yte, run.Yva, run.prior, run.rank, sb, orc
        )
        for name in [*methods, "knn", "irt2pl"]
    }
    if costs is not None:
        res["cost_curve"] = cost_section(costs, run.args.costs, run.entries, Yte, run.rank)
        plot_cost_curve(res["cost_curve"], list(run.ds.llm_names), run.out / "cost_curve.png")
    else:
        res["cost_curve_note"] = "no per-LLM costs given (--costs FILE with columns model,cost)."
    run.bar.update(1)


def size_curve(run: EvalRun, sizes: list[str], methods: list[str], seeds: list[int]) -> None:
    """Test metrics against the number of training queries; a point on the full training set
    with a headline seed reuses that headline run."""
    t0 = time.perf_counter()
    if not sizes:
        run.res["training_size_curve_note"] = "skipped (--skip-curve)"
        run.timed("training-size curve", t0)
        return
    from training.pairs import subsample_matrix

    tr, Yte, b_te = run.tr, run.Yte, run.b_te
    curve: dict[str, dict[str, list]] = {m: {} for m in methods}
    for size in sizes:
        n = tr.n_queries if size == "full" else min(int(size), tr.n_queries)
        for i, s in enumerate(seeds):
            sub = None
            for method in methods:
                if n == tr.n_queries and method in run.entries and s in run.seeds:
                    pm = seed_metrics(run.entries[method], Yte, b_te)[run.seeds.index(s)]
                else:
                    if sub is None:
                        rng = np.random.default_rng(1000 + i)
                        sub = subsample_matrix(
                            run.ds, np.sort(rng.choice(tr.query_rows, n, replace=False))
                        )
                    fit = train_neural(run, method, s, sub, what=f"curve {method} n={n} seed {s}")
                    P = dense_P(fit.model, run.te.emb, run.device)
                    pm = point_metrics(P, Yte, b_te, route_choices(P, Yte))
                    run.bar.update(1)
                curve[method].setdefault(str(n), []).append(
                    {"seed": s, "accuracy": pm["accuracy"], "auc": pm["auc"],
                     "route_micro": pm["route_micro"], "route_macro": pm["route_macro"]}
                )  # fmt: skip
    run.res["training_size_curve"] = curve
    plot_curve(curve, run.out / "curve.png")
    run.timed("training-size curve", t0)


def studies(run: EvalRun, studies: Mapping[str, Study], skip: set[str]) -> None:
    """Run each study not in ``skip``; one failing study is reported and does not lose the rest."""
    res = run.res
    res["sections"], res["extra"] = {}, {}
    for name, study in studies.items():
        if name in skip:
            res["sections"][name] = f"not run (--skip-{name})"
            continue
        run.bar.set_postfix_str(name)
        t0 = time.perf_counter()
        try:
            r_ = study(run.ds, run.split, run.out, run.args.quick, run.args.seed)
            res["sections"][name] = r_.get("markdown", "")
            res["extra"][name] = {k: v for k, v in r_.items() if k != "markdown"}
        except Exception as e:  # noqa: BLE001 - one failing study must not lose the rest
            res["sections"][name] = f"FAILED: {type(e).__name__}: {e}"
        run.timed(name, t0)
        run.bar.update(1)


def write_outputs(run: EvalRun, t_start: float) -> None:
    from training.export import atomic_write

    res, out = run.res, run.out
    plot_reliability(run.entries, run.Yte, out / "reliability.png")
    order = sorted(res["methods"], key=lambda n: -res["methods"][n]["test"]["route_micro"])
    plot_routing(
        [(label(n), res["methods"][n]["test"]["route_micro"],
          res["methods"][n]["ci"].get("route_micro", [np.nan, np.nan])) for n in order],
        out / "routing.png",
    )  # fmt: skip
    res["setup"]["seconds"] = time.time() - t_start
    res["setup"]["timing"] = run.timing
    atomic_write(
        out / "results.json",
        lambda tmp: Path(tmp).write_text(json.dumps(res, indent=2, default=_json_default)),
    )
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(render_report(res)))
    run.bar.update(1)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
