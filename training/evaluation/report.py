"""The evaluation report: markdown tables and PNG figures from ``training.evaluate``'s results.

Everything here reads the results dictionary (the same one written to ``results.json``), so a
report can be re-rendered from a saved run: ``render_report(json.load(open(...)))``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.evaluation.plots import figure
from training.metrics import MISSING, calibration_bins

LABEL = {
    "irtnet": "IrtNet (MoE)",
    "mlp": "MLP (no-MoE ablation)",
    "mf": "EmbedLLM MF",
    "jeirt": "JE-IRT",
    "knn": "KNN",
    "irt2pl": "free-item 2PL IRT",
    "prior": "per-LLM prior",
    "single_best": "single-best LLM",
    "oracle": "oracle",
}


def label(name: str) -> str:
    return LABEL.get(name, name)


# ---------------------------------------------------------------------------------------------
# figures


def plot_reliability(entries: dict[str, dict[str, Any]], Y: np.ndarray, path: Path) -> None:
    """Reliability diagram over the observed pairs, every seed's predictions pooled."""
    obs = Y != MISSING
    with figure(path, figsize=(5.5, 5)) as (_, ax):
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
        for name, e in entries.items():
            if e.get("P") is None:
                continue
            y = np.concatenate([Y[obs]] * len(e["P"]))
            p = np.concatenate([P[obs] for P in e["P"]])
            b = calibration_bins(y, p, n_bins=10)
            k = b["count"] > 0
            ax.plot(b["confidence"][k], b["accuracy"][k], "o-", ms=3, label=label(name))
        ax.set_xlabel("predicted P(correct)")
        ax.set_ylabel("observed accuracy")
        ax.set_title("Reliability (test pairs, 10 bins)")
        ax.legend(fontsize=7)


def plot_routing(rows: list[tuple[str, float, list[float]]], path: Path) -> None:
    """Horizontal bars of routing accuracy with their CIs."""
    names = [r[0] for r in rows]
    vals = np.array([r[1] for r in rows])
    lo = np.array([r[2][0] for r in rows])
    hi = np.array([r[2][1] for r in rows])
    err = np.stack([np.nan_to_num(vals - lo), np.nan_to_num(hi - vals)])
    with figure(path, figsize=(7, 0.35 * len(rows) + 1.2)) as (_, ax):
        ax.barh(names, vals, xerr=err, color="tab:blue", alpha=0.8)
        ax.set_xlim(max(0.0, float(np.nanmin(lo)) - 0.05), min(1.0, float(np.nanmax(hi)) + 0.02))
        ax.invert_yaxis()
        ax.set_xlabel("routing accuracy (test, micro), 95% bootstrap CI")


def plot_curve(curve: dict[str, dict[str, list]], path: Path) -> None:
    """Training-size curve: mean ± sd over seeds of test accuracy and routing."""
    with figure(path, 1, 2, figsize=(9, 3.8)) as (_, axes):
        for method, pts in curve.items():
            xs = sorted(int(s) for s in pts)
            for ax, key in zip(axes, ("accuracy", "route_micro"), strict=True):
                m = [np.mean([r[key] for r in pts[str(s)]]) for s in xs]
                sd = [np.std([r[key] for r in pts[str(s)]]) for s in xs]
                ax.errorbar(xs, m, yerr=sd, marker="o", capsize=3, label=label(method))
        for ax, t in zip(axes, ("test accuracy", "test routing micro"), strict=True):
            ax.set_xscale("log")
            ax.set_xlabel("training questions")
            ax.set_title(t)
            ax.legend(fontsize=7)


def plot_cost_curve(cc: dict[str, Any], llm_names: list[str], path: Path) -> None:
    """Accuracy against mean cost per query: each method's λ sweep, every fixed LLM, the
    cost-aware oracle."""
    with figure(path, figsize=(7, 5)) as (_, ax):
        for name, pts in cc["curves"].items():
            xs = [p["cost"] for p in pts]
            ys = [p["accuracy"] for p in pts]
            order = np.argsort(xs, kind="stable")
            ax.plot(np.array(xs)[order], np.array(ys)[order], "-", lw=1.5, label=label(name))
        fx = cc["fixed_llms"]
        ax.scatter([p["cost"] for p in fx], [p["accuracy"] for p in fx], s=12, c="gray",
                   label="one LLM always")  # fmt: skip
        sb = cc["single_best"]
        ax.scatter([sb["cost"]], [sb["accuracy"]], marker="*", s=120, c="black",
                   label=f"single-best ({llm_names[sb['llm']]})")  # fmt: skip
        o = cc["oracle_cheapest"]
        ax.scatter([o["cost"]], [o["accuracy"]], marker="^", s=60, c="tab:red",
                   label="oracle (cheapest correct)")  # fmt: skip
        ax.set_xscale("symlog", linthresh=max(1e-6, 0.01 * max(p["cost"] for p in fx)))
        ax.set_xlabel("mean cost per query")
        ax.set_ylabel("routing accuracy (test)")
        ax.set_title("Accuracy against cost (route: argmax P − λ·cost)")
        ax.legend(fontsize=7)


# ---------------------------------------------------------------------------------------------
# markdown


def f(x: Any, nd: int = 3) -> str:
    """A number for a table; an en dash for missing or non-finite."""
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{nd}f}"


def ci(c: list[float] | None) -> str:
    return "" if not c else f" [{f(c[0])}, {f(c[1])}]"


def _sd(m: dict[str, Any], key: str) -> str:
    sd = m.get("seed_sd", {}).get(key)
    return "" if sd is None else f" ±{f(sd)}"


def _header(columns: str) -> list[str]:
    """A markdown table's header and separator lines for ``columns`` ("a | b | c")."""
    names = columns.split(" | ")
    return [f"| {' | '.join(names)} |", "|" + "---|" * len(names)]


def _headline(res: dict[str, Any]) -> list[str]:
    L = _header(
        "method | accuracy | AUC | log-loss | ECE | routing micro | routing macro | "
        "Δ routing vs IrtNet | Δ accuracy vs IrtNet | seeds | pairs | queries"
    )
    for name, m in res["methods"].items():
        t, c = m["test"], m.get("ci", {})
        L.append(
            f"| {label(name)} | {f(t.get('accuracy'))}{ci(c.get('accuracy'))}{_sd(m, 'accuracy')} "
            f"| {f(t.get('auc'))}{ci(c.get('auc'))}{_sd(m, 'auc')} | {f(t.get('logloss'))} | "
            f"{f(t.get('ece'))} | {f(t['route_micro'])}{ci(c.get('route_micro'))}"
            f"{_sd(m, 'route_micro')} | {f(t['route_macro'])}{ci(c.get('route_macro'))} | "
            f"{ci(c.get('route_micro_diff_vs_irtnet')).strip() or '–'} | "
            f"{ci(c.get('accuracy_diff_vs_irtnet')).strip() or '–'} | {m.get('n_seeds', 1)} | "
            f"{m.get('n_pairs') or '–'} | {m['n_queries']} |"
        )
    return L


def _training(res: dict[str, Any]) -> list[str]:
    L = ["## Training and engine check\n"] + _header(
        "method | params | best epoch / epochs run (per seed) | s/epoch | train s (all seeds) | "
        "engine max abs diff | ok"
    )
    for name, t in res["training"].items():
        e = t["engine"]
        runs = ", ".join(f"{s['best_epoch']}/{s['epochs_run']}" for s in t["seeds"])
        spe = np.mean([s["seconds_per_epoch"] for s in t["seeds"]])
        tot = sum(s["train_seconds"] for s in t["seeds"])
        L.append(
            f"| {label(name)} | {t['n_params']:,} | {runs} | {f(spe, 1)} | {tot:.0f} | "
            f"{e.get('max_abs_diff', e.get('error'))} | {e['ok']} |"
        )
    L.append("")
    return L


def _decision(res: dict[str, Any]) -> list[str]:
    sb, orc = res["reference"]["single_best"], res["reference"]["oracle"]
    L = [
        "## Routing decision rules (fitted on validation, applied to test)\n",
        f"Single-best {f(sb)}, oracle {f(orc)} (test routing micro). Each rule's parameter is "
        "fitted on the validation split per training seed; accuracies are means over seeds.\n",
        *_header(
            "method | argmax | shrink (w) | switch (δ) | Platt per-LLM | ECE before → after "
            "Platt | gap closed: argmax / shrink / switch / Platt"
        ),
    ]
    for name, d in res["decision_rules"].items():
        g = d["gap_closed"]
        ece0 = res["methods"][name]["test"].get("ece")
        L.append(
            f"| {label(name)} | {f(d['argmax'])} | {f(d['shrink'])} (w={d['shrink_w']}) | "
            f"{f(d['switch'])} (δ={d['switch_delta']}) | {f(d['platt'])} | {f(ece0)} → "
            f"{f(d['ece_after_platt'])} | {f(g['argmax'], 2)} / {f(g['shrink'], 2)} / "
            f"{f(g['switch'], 2)} / {f(g['platt'], 2)} |"
        )
    L.append("")
    return L


def _cost(res: dict[str, Any]) -> list[str]:
    cc = res["cost_curve"]
    names = res["setup"]["llm_names"]
    sb = cc["single_best"]
    L = [
        "## Accuracy against cost\n",
        f"Costs from `{cc['file']}`. Route = argmax over the observed LLMs of P − λ·cost, λ swept "
        f"over {cc['n_lambdas']} values (λ = 0 is plain argmax; the largest always picks the "
        "cheapest). Each cell is the best test routing accuracy at a mean cost per query within "
        "the budget (budgets: fractions of always using the single-best LLM, "
        f"{names[sb['llm']]}, cost {f(sb['cost'], 4)}); means over seeds.\n",
        "| method | "
        + " | ".join(f"≤ {b['fraction']:g}× ({f(b['budget'], 4)})" for b in cc["budgets"])
        + " |",  # fmt: skip
        "|---|" + "---|" * len(cc["budgets"]),
    ]
    for name in cc["curves"]:
        L.append(
            f"| {label(name)} | "
            + " | ".join(f(b["accuracy"].get(name)) for b in cc["budgets"])
            + " |"
        )
    o = cc["oracle_cheapest"]
    L.append(
        f"\nSingle-best always: accuracy {f(sb['accuracy'])} at cost {f(sb['cost'], 4)}. "
        f"Oracle choosing the cheapest correct LLM: {f(o['accuracy'])} at cost {f(o['cost'], 4)}."
        "\n\n![accuracy against cost](cost_curve.png)\n"
    )
    return L


def _curve(curve: dict[str, dict[str, list]]) -> list[str]:
    L = [
        "## Training-size curve (test; mean ± sd over seeds)\n",
        "The full-size point reuses the headline runs (same seeds, same data).\n",
        *_header("method | train questions | accuracy | AUC | routing micro | seeds"),
    ]
    for method, pts in curve.items():
        for size in sorted(pts, key=int):
            rs = pts[size]
            cols = [[r[k] for r in rs] for k in ("accuracy", "auc", "route_micro")]
            L.append(
                f"| {label(method)} | {size} | "
                + " | ".join(f"{f(np.mean(c))} ± {f(np.std(c))}" for c in cols)
                + f" | {len(rs)} |"
            )
    L.append("\n![training-size curve](curve.png)\n")
    return L


def _candidates(s: dict[str, Any]) -> str:
    c = s.get("test_candidates")
    if not c:
        return ""
    return (
        f"Routing chooses, per test query, among the LLMs observed on it: {c['mean']:.1f} on "
        f"average (min {c['min']}, max {c['max']}); {c['queries_with_none']} test queries had "
        "no observed LLM and are left out of routing (counted in the table's queries column).\n"
    )


def _or_data(v: object) -> str:
    """A recipe value of the setup, or where it came from when the data chose it."""
    return "from the data (training.defaults; see each method's recipe)" if v is None else str(v)


def render_report(res: dict[str, Any]) -> str:
    s = res["setup"]
    seeds = s.get("train_seeds", [s["seed"]])
    L = [
        "# irt_fast evaluation\n",
        f"Command: `{s['command']}`  ",
        f"Data: `{s['data']}`: {s['n_llms']} LLMs; split train/val/test = "
        f"{s['sizes']['train']['queries']}/{s['sizes']['val']['queries']}/"
        f"{s['sizes']['test']['queries']} queries (test pairs {s['sizes']['test']['pairs']}); "
        f"split {s.get('split', 'seeded')}, seed {s['split_seed']} (written to split.csv). "
        f"{'QUICK (small models)' if s['quick'] else 'Paper model sizes'}; training seeds "
        f"{seeds}; epochs ≤ {_or_data(s['epochs'])}, lr {_or_data(s['lr'])}, early stopping "
        f"patience {_or_data(s.get('patience'))}. Wall time {f(s.get('seconds', float('nan')) / 60, 1)} min "
        f"on {s.get('device', 'cpu')}.\n",
        _candidates(s),
        "## Test results\n",
        *_headline(res),
        "",
        "Point estimates are means over the training seeds. Brackets: 95% CI from "
        f"{s['n_boot']} bootstrap resamples of the test questions, each recomputing the "
        "seed-mean metric, paired across methods (the Δ columns are CIs of method − IrtNet on "
        "the same resamples). ± is the standard deviation over training seeds. Accuracy, AUC, "
        "log-loss and ECE are over the observed test pairs; routing is among the LLMs observed "
        "on each query, so a missing answer is never a win. The single-best LLM and the oracle "
        "have no per-pair predictions.\n",
    ]
    if res.get("training"):
        L += _training(res)
    knn = res.get("knn", {})
    if knn:
        L.append(
            f"KNN: k = {knn['k']} chosen on validation accuracy "
            f"({', '.join(f'k={k}: {f(v)}' for k, v in knn['val_accuracy'].items())}).\n"
        )
    if res.get("decision_rules"):
        L += _decision(res)
    if res.get("cost_curve"):
        L += _cost(res)
    elif res.get("cost_curve_note"):
        L.append(f"Accuracy against cost: {res['cost_curve_note']}\n")
    pb = res.get("per_benchmark", {})
    if pb:
        names = list(pb)
        benches = sorted({b for v in pb.values() for b in v})
        L.append("## Routing accuracy per benchmark (test; mean over seeds)\n")
        L.append("| benchmark | " + " | ".join(label(n) for n in names) + " |")
        L.append("|---|" + "---|" * len(names))
        for b in benches:
            L.append(f"| {b} | " + " | ".join(f(pb[n].get(b)) for n in names) + " |")
        L.append("")
    if res.get("training_size_curve"):
        L += _curve(res["training_size_curve"])
    elif "training_size_curve_note" in res:
        L.append(f"Training-size curve: {res['training_size_curve_note']}\n")
    for mod, sec in res.get("sections", {}).items():
        if not sec.lstrip().startswith("#"):
            L.append(f"## {mod}\n")
        L.append(sec if sec else "(empty section)")
        L.append("")
    timing = s.get("timing", {})
    if timing:
        L.append("## Where the time went\n")
        L.append("| part | minutes |")
        L.append("|---|---:|")
        L += [f"| {k} | {v / 60:.1f} |" for k, v in timing.items()]
        L.append("")
    L.append("Figures: reliability.png, routing.png and the others linked above.\n")
    return "\n".join(L)
