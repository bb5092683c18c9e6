"""Train an IrtNet (or a baseline) on a correctness dataset and export it.

    python -m training.fit --data DIR --out DIR [--split FILE] [--seed N] [--device auto|cpu|cuda]
    python -m training.fit --demo --out DIR          # built-in synthetic data with known truth

Writes into --out: ``model.safetensors`` (docs/format.md), ``metrics.json`` (validation and test
correctness accuracy, AUC, log-loss, ECE, routing micro/macro against the per-LLM prior, the
single-best LLM and the oracle), ``split.csv`` (the exact split used) and ``log.jsonl`` (one
line per epoch). The files are written into a fresh directory beside --out and swapped in at
the end (training.rundir): --out always holds one whole run, and bad inputs leave it untouched.
Under torchrun (``torchrun --standalone --nproc_per_node 2 -m training.fit ...``) the same
command trains the same model over several processes and rank 0 alone writes --out
(training.distributed, docs/distributed.md).
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
import torch

from irt_fast.embed import DEFAULT_EMBEDDER
from irt_fast.errors import InputError
from irt_fast.splits import write_split_file
from training import defaults, distributed
from training.configs import ModelConfig
from training.export import atomic_write, save_model
from training.loop import TrainOptions, evaluate, fit_model, prior_metrics, resolve_device
from training.metrics import pearson, unit_rows
from training.model import IrtModel
from training.numerics import flushing_denormals
from training.pairs import matrices
from training.presets import TRAIN_METHODS
from training.presets import model_config as preset_config
from training.rundir import check_out, staged_run

RUN_FILES = ("model.safetensors", "metrics.json", "split.csv", "log.jsonl")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.fit", description=__doc__.split("\n")[0])
    src = p.add_argument_group("data")
    src.add_argument("--data", type=Path, help="dataset directory (or EmbedLLM CSV)")
    src.add_argument("--demo", action="store_true", help="train on built-in synthetic data")
    src.add_argument("--out", type=Path, default=Path("runs/latest"), help="output directory")
    src.add_argument("--split", type=Path, help="split file (query_id, split ∈ train/val/test)")
    src.add_argument(
        "--split-seed", type=int, default=0, help="seed of the 80/10/10 split (0: the fixed split)"
    )
    src.add_argument("--train-size", type=int, help="subsample the training queries to N")
    src.add_argument("--holdout-benchmark", help="leave this benchmark out as the test set")
    src.add_argument(
        "--embedder",
        default=None,
        help="embed the query texts with this embedder (built id, hub name or local path); data "
        "that ships embeddings is re-embedded unless this embedder reproduces them",
    )
    m = p.add_argument_group("model")
    m.add_argument("--method", default="irtnet", choices=list(TRAIN_METHODS))
    m.add_argument(  # --dim: torchrun's parser takes a bare --d for one of its own options
        "--d", "--dim", dest="d", type=int, default=None, help="ability dimension (paper: 232)"
    )
    m.add_argument("--n-routed", type=int, default=None, help="routed experts (paper: 39)")
    m.add_argument("--n-shared", type=int, default=1)
    m.add_argument("--top-k", type=int, default=0, help="experts per query (0 = all: dense)")
    m.add_argument("--hidden", type=int, default=None, help="expert hidden width (paper: 512)")
    m.add_argument("--expert-dim", type=int, default=None, help="expert output (paper: 256)")
    m.add_argument("--no-llm-bias", action="store_true", help="drop the per-LLM offset")
    t = p.add_argument_group("training")
    t.add_argument(
        "--epochs", type=int, default=None,
        help="most epochs (default: from the data, 30 on MMLU-Pro, up to 300 on few questions; "
        "early stopping ends the run sooner)",
    )  # fmt: skip
    t.add_argument(
        "--lr", type=float, default=None,
        help="Adam lr (default: chosen from the data by training.defaults; --demo: 3e-3)",
    )  # fmt: skip
    t.add_argument(
        "--stop-metric", choices=["logloss", "accuracy"], default=None,
        help="validation metric for early stopping and the plateau schedule (default: logloss)",
    )  # fmt: skip
    t.add_argument(
        "--preset", choices=["paper", "reduced", "small"], default=None,
        help="item-network size (default: from the number of training questions)",
    )  # fmt: skip
    t.add_argument(
        "--old-recipe", action="store_true",
        help="the paper's fixed recipe instead of choices from the data: lr 1e-4, accuracy "
             "stopping, paper sizes",
    )  # fmt: skip
    t.add_argument(
        "--llm-decay", action="store_true", default=None,
        help="weight decay on θ and the per-LLM offsets too (default: item network only)",
    )  # fmt: skip
    t.add_argument("--dropout", type=float, default=None, help="expert dropout (paper: 0.5)")
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--noise", type=float, default=0.05)
    t.add_argument("--batching", choices=["query", "rows"], default="query")
    t.add_argument("--batch-queries", type=int, default=64)
    t.add_argument("--batch-rows", type=int, default=2048)
    t.add_argument(
        "--patience",
        type=int,
        default=None,
        help="early-stopping patience in epochs (default: from the data, 5 on MMLU-Pro)",
    )
    t.add_argument("--theta-init-std", type=float, default=0.1)
    t.add_argument("--theta-prior-std", type=float, default=1.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def choose_preset(args: argparse.Namespace, train: Any, n_llms: int) -> defaults.Choice:
    """The item-network size: --preset, the demo's, or chosen from the training questions."""
    if args.demo and args.preset is None:
        return defaults.Choice("small", "demo", "--demo: sized for the small synthetic problem")
    shape = defaults.Shape(train.n_queries, n_llms, train.n_pairs, args.batch_queries)
    return defaults.resolve(shape, old=args.old_recipe, preset=args.preset)["preset"]


def model_config(
    args: argparse.Namespace, embed_dim: int, n_llms: int, preset: str = "paper"
) -> ModelConfig:
    return preset_config(
        args.method,
        preset,
        embed_dim=embed_dim,
        n_llms=n_llms,
        llm_bias=not args.no_llm_bias,
        d=args.d,
        hidden_dim=args.hidden,
        expert_dim=args.expert_dim,
        n_shared=args.n_shared,
        n_routed=args.n_routed,
        top_k=args.top_k,
        dropout=args.dropout,
    )


def options_from_args(args: argparse.Namespace, out: Path | None) -> TrainOptions:
    """The training options of the flags; the per-epoch log goes into ``out`` (None: no log,
    no progress: a rank other than 0)."""
    return TrainOptions(
        epochs=args.epochs if args.epochs is not None else (30 if args.demo else None),
        lr=args.lr if args.lr is not None else (3e-3 if args.demo else None),
        stop_metric=args.stop_metric,
        old_recipe=args.old_recipe,
        llm_decay=args.llm_decay,
        weight_decay=args.weight_decay,
        noise_std=args.noise,
        batching=args.batching,
        batch_queries=args.batch_queries,
        batch_rows=args.batch_rows,
        patience=args.patience,
        theta_init_std=args.theta_init_std,
        theta_prior_std=args.theta_prior_std,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet and out is not None,
        log_path=out / "log.jsonl" if out is not None else None,
    )


SAME_VECTORS_SAMPLE = 32  # texts re-embedded to test whether shipped vectors are X's
SAME_VECTORS_COSINE = 0.999  # fp32 ONNX vs torch differ by ~1e-6; another embedder by far more


def shipped_are_from(ds: Any, name: str) -> bool:
    """Whether ``ds``'s shipped embeddings are ``name``'s: a seeded sample of its texts is
    embedded with ``name`` and must match row by row (cosine ≥ SAME_VECTORS_COSINE)."""
    from irt_fast.embed import embed_texts

    n = min(SAME_VECTORS_SAMPLE, ds.n_queries)
    rows = np.sort(np.random.default_rng(0).choice(ds.n_queries, n, replace=False))
    texts = [ds.queries["text"][int(i)] for i in rows]
    fresh = np.asarray(embed_texts(texts, name, progress=False))
    shipped = np.asarray(ds.embeddings)[rows]
    if fresh.shape != shipped.shape:
        return False
    return bool(np.all((unit_rows(fresh) * unit_rows(shipped)).sum(1) >= SAME_VECTORS_COSINE))


def embed_with(ds: Any, name: str) -> tuple[Any, dict[str, Any]]:
    """``ds`` with vectors made by ``name``, and that embedder's info. Shipped embeddings are
    kept when ``name`` reproduces them (``shipped_are_from``), else the texts are embedded."""
    from irt_fast.embed import embed_dataset, embedder_info

    if ds.embeddings is not None and shipped_are_from(ds, name):
        print(f"the shipped embeddings are {name}'s: kept", file=sys.stderr)
    else:
        if ds.embeddings is not None:
            print(f"the shipped embeddings are not {name}'s: re-embedding", file=sys.stderr)
        print(f"embedding {ds.n_queries} query texts with {name} …", file=sys.stderr)
        ds = embed_dataset(ds, name)
    return ds, embedder_info(name)


def load_data(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """(dataset with embeddings, synthetic truth or None, embedder info).

    ``--embedder X`` always means "the vectors come from X", and the weights file records X
    with the dimension of the vectors the model was trained on. On data that ships embeddings,
    X re-embeds a sample of 32 texts: if X reproduces the shipped vectors they are kept (no
    work lost when they are X's, as in training.experiments.text_path), otherwise every text is
    re-embedded with X. Re-embedding rather than refusing: the shipped vectors' embedder is recorded
    nowhere, so the flag is the only way a user can say which embedder to serve with, and
    refusing would make them delete the embeddings file to change embedder. Without the flag,
    shipped embeddings are used and recorded as the default embedder's (the shared data's);
    data without embeddings is embedded with the default."""
    from irt_fast import data as irt_data

    truth = None
    if args.demo or args.data is None:
        if args.embedder is not None:
            raise InputError("--embedder has no effect with --demo (synthetic vectors)")
        from irt_fast.synthetic import make_synthetic

        ds, truth = make_synthetic(seed=args.seed)
        emb_info = {"name": "synthetic", "dim": int(ds.embeddings.shape[1]), "normalize": True}
        return ds, truth, emb_info
    ds = irt_data.load_dataset(args.data)
    if args.embedder is not None or ds.embeddings is None:
        ds, emb_info = embed_with(ds, args.embedder or DEFAULT_EMBEDDER)
    else:
        emb_info = {"name": DEFAULT_EMBEDDER, "dim": int(ds.embeddings.shape[1]), "normalize": True}
    return ds, truth, emb_info


def make_split(args: argparse.Namespace, ds: Any) -> dict[str, np.ndarray]:
    from irt_fast import splits

    if args.split is not None:
        split = splits.read_split_file(args.split, ds)
    elif args.holdout_benchmark:
        split = splits.leave_one_benchmark_out(ds, args.holdout_benchmark, seed=args.split_seed)
    else:
        split = splits.fixed_split(ds.queries["query_id"].to_numpy(), seed=args.split_seed)
    if args.train_size:
        split = dict(split)
        split["train"] = splits.subsample(split["train"], args.train_size, seed=args.seed)
    return split


def demo_report(model: IrtModel, ds: Any, truth: Any, device: torch.device) -> dict[str, float]:
    """What the model recovered of the synthetic ground truth (all queries)."""
    with torch.no_grad():
        v = torch.from_numpy(np.ascontiguousarray(ds.embeddings)).to(device)
        alpha, beta = model.item_params(v)
        P = model.predict_proba(v).cpu().numpy()
        # β is identified only up to θ → θ + c, β → β + α·c: compare the difficulty for the
        # average LLM, β − α·θ̄, which the logits pin down.
        bias = model.llm_bias.mean() if model.llm_bias is not None else 0.0
        learned = (beta - alpha @ model.theta.mean(0) - bias).cpu().numpy()
    true = truth.beta - truth.alpha @ truth.theta.mean(0)
    return {
        "pearson_beta": pearson(learned, true),
        "pearson_P": pearson(P, truth.prob.T),
        "pearson_llm_accuracy": pearson(P.mean(0), truth.prob.mean(1)),
    }


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Everything checked and built before --out is touched: data, split, matrices, config."""
    ds, truth, emb_info = load_data(args)
    if distributed.current().is_main:
        print(ds.summary(), file=sys.stderr)
    split = make_split(args, ds)
    mats = matrices(ds, split)
    preset = choose_preset(args, mats["train"], ds.n_llms)
    cfg = model_config(args, int(ds.embeddings.shape[1]), ds.n_llms, preset.value)
    return {"ds": ds, "truth": truth, "emb_info": emb_info, "split": split, "mats": mats,
            "cfg": cfg, "preset": preset}  # fmt: skip


@flushing_denormals
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    check_out(out, RUN_FILES)  # read-only: refuse early, before any work
    with distributed.session(args.device) as world:  # world size 1 outside torchrun
        run = prepare(args)
        if not world.is_main:  # trains its share of every batch; rank 0 writes the run
            train_and_write(args, run, None, out)
            return 0
        with staged_run(out, RUN_FILES) as tmp:
            print(f"writing the run into {tmp} (it becomes {out} when done)", file=sys.stderr)
            metrics = train_and_write(args, run, tmp, out)
    print(summary_text(metrics), flush=True)
    print(f"wrote {out / 'model.safetensors'}, metrics.json, split.csv, log.jsonl", flush=True)
    return 0


def train_and_write(
    args: argparse.Namespace, run: dict[str, Any], tmp: Path | None, out: Path
) -> dict[str, Any] | None:
    """Train, evaluate and write the run's files into ``tmp`` (swapped in as ``out`` later).
    ``tmp`` None (ranks other than 0 under torchrun): train only, write nothing, return None."""
    ds, mats, cfg = run["ds"], run["mats"], run["cfg"]
    bench = ds.queries["benchmark"].to_numpy()
    opts = options_from_args(args, tmp)
    world = distributed.current()
    device = world.device(resolve_device(opts.device))
    if tmp is not None:  # rank 0 speaks for every rank
        print(f"training {args.method} on {world.size} × {device}: {mats['train'].n_queries} train "
              f"queries ({mats['train'].n_pairs} pairs), {mats['val'].n_queries} val, "
              f"{mats['test'].n_queries} test", file=sys.stderr)  # fmt: skip
    t0 = time.perf_counter()
    fit = fit_model(
        cfg, mats["train"], mats["val"], opts, val_benchmarks=bench[mats["val"].query_rows]
    )
    train_seconds = time.perf_counter() - t0
    if tmp is None:
        return None
    prior_rank = mats["train"].llm_base_rates(smoothing=1.0)
    options = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()}
    options.pop("on_epoch", None)
    options["log_path"] = str(out / "log.jsonl")  # where it lives once the run is swapped in
    metrics: dict[str, Any] = {
        "method": args.method,
        "config": cfg.to_json(),
        "options": options,
        "device": str(device),
        "world_size": world.size,
        "best_epoch": fit.best_epoch,
        "epochs_run": len(fit.history),
        "seconds_per_epoch": fit.seconds_per_epoch,
        "train_seconds": train_seconds,
        "n_llms": ds.n_llms,
        "sizes": {k: {"queries": m.n_queries, "pairs": m.n_pairs} for k, m in mats.items()},
        "embedder": run["emb_info"],
    }
    for name in ("val", "test"):
        m = mats[name]
        if m.n_pairs == 0:
            continue
        b = bench[m.query_rows]
        metrics[name] = evaluate(fit.model, m, device, benchmarks=b, prior_rank=prior_rank)
        metrics[name]["prior"] = prior_metrics(mats["train"], m, b)
    if run["truth"] is not None:
        metrics["demo_truth_recovery"] = demo_report(fit.model, ds, run["truth"], device)
    choices = {**fit.recipe["choices"], "preset": asdict(run["preset"])}
    for key, flag in (("lr", args.lr), ("epochs", args.epochs)):
        if args.demo and flag is None:  # the demo's own value, not the user's
            choices[key] = {**choices[key], "source": "demo", "why": "--demo: sized for the demo"}
    recipe = {**fit.recipe, "choices": choices}
    metrics["recipe"] = recipe
    training_meta = {
        "recipe": recipe,
        "seed": args.seed,
        "data": str(args.data) if args.data else "synthetic",
        "best_epoch": fit.best_epoch,
        "test": metrics.get("test", {}).get("correctness"),
    }
    save_model(
        fit.model.cpu(),
        tmp / "model.safetensors",
        llm_names=list(ds.llm_names),
        embedder=run["emb_info"],
        training=training_meta,
        n_answers=np.bincount(mats["train"].llm, minlength=ds.n_llms).tolist(),
    )
    write_split_file(run["split"], tmp / "split.csv")
    atomic_write(
        tmp / "metrics.json",
        lambda f: Path(f).write_text(json.dumps(metrics, indent=2, default=float)),
    )
    return metrics


def summary_text(metrics: dict[str, Any]) -> str:
    lines = [
        f"{metrics['method']}: best epoch {metrics['best_epoch']} of {metrics['epochs_run']}, "
        f"{metrics['seconds_per_epoch']:.1f} s/epoch on {metrics['device']}"
    ]
    for name in ("val", "test"):
        if name not in metrics:
            continue
        c, r, pr = metrics[name]["correctness"], metrics[name]["routing"], metrics[name]["prior"]
        lines.append(
            f"{name:>4}: accuracy {c['accuracy']:.3f} (prior {pr['correctness']['accuracy']:.3f})  "
            f"AUC {c['auc']:.3f} (prior {pr['correctness']['auc']:.3f})  "
            f"routing micro {r['router']['micro']:.3f} macro {r['router']['macro']:.3f} "
            f"(single-best {r['single_best']['micro']:.3f}, oracle {r['oracle']['micro']:.3f})"
        )
    if "demo_truth_recovery" in metrics:
        d = metrics["demo_truth_recovery"]
        lines.append(
            "recovered truth: Pearson r(β) {pearson_beta:.3f}, r(P) {pearson_P:.3f}, "
            "r(LLM accuracy) {pearson_llm_accuracy:.3f}".format(**d)
        )
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
