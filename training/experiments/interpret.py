"""Interpretability: what the learned parameters mean.

- β vs accuracy: mean β per benchmark (over all its questions) against the benchmark's mean
  observed accuracy (Pearson r; the paper reports −0.97). β alone is identified only up to
  θ → θ + c, β → β + α·c, so the "effective difficulty" β − α·θ̄ − b̄ (difficulty for the average
  LLM, pinned by the logits) is reported too.
- t-SNE (sklearn) of α on a seeded sample of ≤ 2000 questions (``quick``: 500), coloured by
  benchmark.
- θ by LLM family: mean L2 distance between θs of LLMs of the same family (families with ≥ 2
  members) vs of different families. Family = ``llm_family(name)``, from the name prefix:

  ========================  ==========================================
  family                    name contains (case-insensitive, first hit)
  ========================  ==========================================
  Llama-2                   ``llama-2``
  Llama-3                   ``llama-3``
  Mistral                   ``mistral``, ``mixtral``, ``mathstral``
  Qwen                      ``qwen``
  Yi                        name starts with ``yi-``
  gemma                     ``gemma``
  Phi                       ``phi-``
  gemini                    ``gemini``
  DeepSeek                  ``deepseek``
  other                     anything else: its own family (the name up to the first ``-``/``_``)
  ========================  ==========================================

  The same distances are reported on the ability profiles α_q·θ_m over the t-SNE sample
  (RMS-scaled): θ directions that α never uses keep their random initialisation and would
  otherwise add the same noise to every distance.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.evaluation.plots import figure, pyplot
from training.experiments.setup import train_on
from training.metrics import bootstrap_indices, pearson, percentile_ci
from training.model import IrtModel
from training.pairs import matrices

_FAMILIES: list[tuple[str, tuple[str, ...]]] = [
    ("Llama-2", ("llama-2",)),
    ("Llama-3", ("llama-3",)),
    ("Mistral", ("mistral", "mixtral", "mathstral")),
    ("Qwen", ("qwen",)),
    ("gemma", ("gemma",)),
    ("Phi", ("phi-",)),
    ("gemini", ("gemini",)),
    ("DeepSeek", ("deepseek",)),
]


def llm_family(name: str) -> str:
    low = name.lower()
    for fam, keys in _FAMILIES:
        if any(k in low for k in keys):
            return fam
    if low.startswith("yi-"):
        return "Yi"
    return re.split(r"[-_]", name, maxsplit=1)[0]


def family_distances(theta: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Mean pairwise L2 distance of θ rows within families (size ≥ 2) and across families."""
    fams = np.array([llm_family(n) for n in names])
    dist = np.linalg.norm(theta[:, None, :] - theta[None, :, :], axis=-1)
    iu = np.triu_indices(len(names), 1)
    same = fams[iu[0]] == fams[iu[1]]
    d = dist[iu]
    per_family = {}
    for f in sorted(set(fams.tolist())):
        idx = np.flatnonzero(fams == f)
        if len(idx) >= 2:
            sub = dist[np.ix_(idx, idx)][np.triu_indices(len(idx), 1)]
            per_family[f] = {"n": len(idx), "mean_intra": float(sub.mean())}
    intra = float(d[same].mean()) if same.any() else float("nan")
    inter = float(d[~same].mean()) if (~same).any() else float("nan")
    return {
        "families": {n: str(f) for n, f in zip(names, fams, strict=True)},
        "intra_mean_l2": intra,
        "inter_mean_l2": inter,
        "ratio_intra_inter": intra / inter if inter > 0 else float("nan"),
        "n_intra_pairs": int(same.sum()),
        "n_inter_pairs": int((~same).sum()),
        "per_family": per_family,
    }


def run(
    ds: Any,
    split: dict[str, np.ndarray],
    out_dir: Path,
    quick: bool,
    seed: int,
    model: IrtModel | None = None,
) -> dict[str, Any]:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = train_on(ds, matrices(ds, split), quick, seed)
    model = model.cpu().eval()
    with torch.no_grad():
        v = torch.from_numpy(np.ascontiguousarray(ds.embeddings, dtype=np.float32))
        alpha, beta = model.item_params(v)
        bias = float(model.llm_bias.mean()) if model.llm_bias is not None else 0.0
        eff = (beta - alpha @ model.theta.mean(0) - bias).numpy()
        alpha_np, beta_np = alpha.numpy(), beta.numpy()
        theta = model.theta.numpy().copy()
    bench = np.asarray(ds.benchmarks)
    names = sorted(set(bench.tolist()))
    r = ds.responses
    q_idx = r["q_idx"].to_numpy()
    correct = r["correct"].to_numpy().astype(np.float64)
    resp_bench = bench[q_idx]
    acc = np.array([correct[resp_bench == b].mean() for b in names])
    mb = np.array([beta_np[bench == b].mean() for b in names])
    me = np.array([eff[bench == b].mean() for b in names])
    r_beta, r_eff = pearson(mb, acc), pearson(me, acc)
    # 95% CI of r resampling benchmarks (the units r is computed over).
    boot = bootstrap_indices(len(names), 1000, seed)
    r_beta_ci = list(percentile_ci(np.array([pearson(mb[i], acc[i]) for i in boot])))

    pngs = [out_dir / "beta_vs_accuracy.png", out_dir / "alpha_tsne.png"]
    with figure(pngs[0], figsize=(5.5, 4.5), dpi=110) as (_, ax):
        ax.scatter(mb, acc)
        for x, y_, n in zip(mb, acc, names, strict=True):
            ax.annotate(n, (x, y_), fontsize=7)
        ax.set_xlabel("mean β (learned difficulty)")
        ax.set_ylabel("mean observed accuracy")
        ax.set_title(f"benchmarks: Pearson r = {r_beta:.3f}")

    n_sample = min(len(bench), 500 if quick else 2000)
    rows = np.sort(np.random.default_rng(seed).choice(len(bench), n_sample, replace=False))
    perplexity = float(min(30.0, max(5.0, (n_sample - 1) / 4)))
    # One thread: sklearn's OpenMP pool oversubscribes a loaded machine (60 s vs 0.6 s here).
    with threadpool_limits(1):
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
        xy = tsne.fit_transform(alpha_np[rows])
    with figure(pngs[1], figsize=(7, 6), dpi=110) as (_, ax):
        cmap = pyplot().get_cmap("tab20")
        for i, b in enumerate(names):
            sel = bench[rows] == b
            ax.scatter(xy[sel, 0], xy[sel, 1], s=5, color=cmap(i % 20), label=b)
        ax.legend(fontsize=7, markerscale=2, loc="best")
        ax.set_title(f"t-SNE of α ({n_sample} questions)")
    # How well do benchmarks separate in the α map? k-NN (k=10) benchmark agreement in 2-D.
    d2 = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    nn = np.argsort(d2, axis=1)[:, :10]
    b_s = bench[rows]
    knn_agree = float((b_s[nn] == b_s[:, None]).mean())
    _, counts = np.unique(b_s, return_counts=True)
    chance = float(((counts / counts.sum()) ** 2).sum())

    fam = family_distances(theta, list(ds.llm_names))
    # θ directions α never uses keep their random initialisation; the ability profile
    # (α_q·θ_m over the sampled questions, RMS-scaled) is the identifiable part of θ.
    profile = theta @ alpha_np[rows].T / np.sqrt(len(rows))
    fam_profile = family_distances(profile, list(ds.llm_names))
    lines = [
        "## Interpreting the learned parameters",
        "",
        f"β vs accuracy over {len(names)} benchmarks: Pearson r(mean β, mean accuracy) = "
        f"**{r_beta:.3f}** (95% CI [{r_beta_ci[0]:.3f}, {r_beta_ci[1]:.3f}], resampling "
        f"benchmarks; paper: −0.97); with the effective difficulty β − α·θ̄ − b̄: "
        f"r = {r_eff:.3f}.",
        "",
        "| benchmark | mean β | mean eff. difficulty | accuracy |",
        "|---|---:|---:|---:|",
        *(
            f"| {n} | {b:.3f} | {e:.3f} | {a:.3f} |"
            for n, b, e, a in zip(names, mb, me, acc, strict=True)
        ),
        "",
        f"t-SNE of α on {n_sample} questions: 10-NN same-benchmark rate {knn_agree:.3f} "
        f"(chance {chance:.3f}).",
        "",
        f"θ by family: mean intra-family L2 {fam['intra_mean_l2']:.3f} "
        f"({fam['n_intra_pairs']} pairs) vs inter-family {fam['inter_mean_l2']:.3f} "
        f"({fam['n_inter_pairs']} pairs), ratio {fam['ratio_intra_inter']:.3f}. "
        "Same on the ability profiles α·θ (RMS over the t-SNE sample): intra "
        f"{fam_profile['intra_mean_l2']:.3f} vs inter {fam_profile['inter_mean_l2']:.3f}, "
        f"ratio {fam_profile['ratio_intra_inter']:.3f}.",
        "",
        "| family | LLMs | mean intra L2 (θ) | mean intra L2 (α·θ profile) |",
        "|---|---:|---:|---:|",
        *(
            f"| {f} | {v['n']} | {v['mean_intra']:.3f} | "
            f"{fam_profile['per_family'][f]['mean_intra']:.3f} |"
            for f, v in fam["per_family"].items()
        ),
        "",
        *(f"![{p.stem}]({p.name})" for p in pngs),
        "",
    ]
    return {
        "benchmarks": names,
        "mean_beta": mb.tolist(),
        "mean_effective_difficulty": me.tolist(),
        "accuracy": acc.tolist(),
        "pearson_beta_accuracy": r_beta,
        "pearson_beta_accuracy_ci": r_beta_ci,
        "pearson_effective_difficulty_accuracy": r_eff,
        "tsne_n": n_sample,
        "tsne_knn_same_benchmark": knn_agree,
        "tsne_knn_chance": chance,
        "theta_family": fam,
        "profile_family": fam_profile,
        "png": [str(p) for p in pngs],
        "markdown": "\n".join(lines),
    }
