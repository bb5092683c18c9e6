"""Train an IrtNet (or a baseline) on a correctness dataset and export it.

    python -m training.fit --data DIR --out DIR [--split FILE] [--seed N] [--device auto|cpu|cuda]
    python -m training.fit --demo --out DIR          # built-in synthetic data with known truth

Writes into --out: ``model.safetensors`` (docs/format.md), ``metrics.json`` (validation and test
correctness accuracy, AUC, log-loss, ECE, routing micro/macro against the per-LLM prior, the
single-best LLM and the oracle), ``split.csv`` (the exact split used) and ``log.jsonl`` (one
line per epoch).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from irt_fast.splits import write_split_file
from training.data import DeviceMatrix, PairMatrix, build_pair_matrix
from training.export import atomic_write, save_model
from training.metrics import (
    concat_outcomes,
    correctness_metrics,
    pearson,
    routing_correct,
    summarize_routing,
)
from training.model import IrtModel, IrtNetConfig, ThetaInit, build_model, mlp_config_matching

DEFAULT_EMBEDDER = "sentence-transformers/all-mpnet-base-v2"


@dataclass
class TrainOptions:
    """The training recipe. Defaults are the paper's reference recipe, except θ's
    initialisation and prior (see README: "Sparse pools and the prior floor")."""

    epochs: int = 30
    lr: float = 1e-4
    weight_decay: float = 1e-4
    noise_std: float = 0.05
    batching: str = "query"  # "query" (query-major) or "rows" (the paper's row batches)
    batch_queries: int = 64
    batch_rows: int = 2048
    patience: int = 5  # early stopping on validation accuracy
    lr_patience: int = 2  # ReduceLROnPlateau on validation accuracy
    lr_factor: float = 0.1
    theta_init_std: float = 0.1
    # Gaussian prior N(0, σ²) on every θ entry, as a MAP penalty ‖θ‖²/(2σ²) per LLM; 0 = off.
    theta_prior_std: float = 1.0
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    max_steps_per_epoch: int | None = None  # for timing runs only
    log_path: Path | None = None
    # Called with each epoch's log record (epoch, train_loss, val_accuracy, ...): lets a caller
    # that runs many fits show progress without the per-fit bars.
    on_epoch: Callable[[dict[str, Any]], None] | None = None


@dataclass
class FitResult:
    model: IrtModel
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    seconds_per_epoch: float = float("nan")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    return torch.device(name)


@torch.no_grad()
def predict_pairs(
    model: IrtModel, m: PairMatrix, device: torch.device, chunk: int = 4096
) -> np.ndarray:
    """P(correct) for every observed pair of ``m`` (CSR order), in chunks of queries."""
    model.eval()
    dm = DeviceMatrix(m, device) if not isinstance(m, DeviceMatrix) else m
    out = []
    for lo in range(0, m.n_queries, chunk):
        q = torch.arange(lo, min(lo + chunk, m.n_queries), device=device)
        v, pos, llm, _ = dm.query_batch(q)
        alpha, beta = model.item_params(v)
        out.append(torch.sigmoid(model.pair_logits(alpha, beta, pos, llm)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


@torch.no_grad()
def evaluate(
    model: IrtModel,
    m: PairMatrix,
    device: torch.device,
    *,
    benchmarks: np.ndarray | None = None,
    prior_rank: np.ndarray | None = None,
    chunk: int = 4096,
) -> dict[str, Any]:
    """Correctness metrics over the observed pairs and routing over the queries of ``m``.
    Memory: one chunk × n_llms block at a time."""
    model.eval()
    dm = DeviceMatrix(m, device)
    pair_p, parts = [], []
    for lo in range(0, m.n_queries, chunk):
        hi = min(lo + chunk, m.n_queries)
        v, pos, llm, _ = dm.query_batch(torch.arange(lo, hi, device=device))
        # One item-network pass serves both the pair probabilities and the routing matrix.
        alpha, beta = model.item_params(v)
        pair_p.append(torch.sigmoid(model.pair_logits(alpha, beta, pos, llm)).cpu().numpy())
        P = torch.sigmoid(model.logits_from_params(alpha, beta)).cpu().numpy()
        parts.append(routing_correct(P, m.dense_labels(lo, hi), prior_rank))
    p = np.concatenate(pair_p) if pair_p else np.zeros(0, np.float32)
    res: dict[str, Any] = {"correctness": correctness_metrics(m.y, p)}
    res["routing"] = summarize_routing(concat_outcomes(parts), benchmarks)
    return res


def prior_metrics(
    train: PairMatrix, m: PairMatrix, benchmarks: np.ndarray | None
) -> dict[str, Any]:
    """The per-LLM prior: predict each LLM's training accuracy for every query."""
    rates = train.llm_base_rates(smoothing=0.0)
    p = rates[m.llm]
    return {"correctness": correctness_metrics(m.y, p)}


def _theta_penalty(model: IrtModel, opts: TrainOptions, n_pairs: int) -> torch.Tensor:
    if opts.theta_prior_std <= 0:
        return model.theta.new_zeros(())
    return model.theta.pow(2).sum() / (2 * opts.theta_prior_std**2 * n_pairs)


def fit_model(
    cfg: IrtNetConfig,
    train: PairMatrix,
    val: PairMatrix | None,
    opts: TrainOptions,
    *,
    val_benchmarks: np.ndarray | None = None,
) -> FitResult:
    """Train with Adam, embedding noise, ReduceLROnPlateau and early stopping on validation
    accuracy; returns the best checkpoint (a real copy of its weights) loaded into the model."""
    device = resolve_device(opts.device)
    torch.manual_seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed)
    base = torch.from_numpy(train.llm_base_rates(smoothing=1.0))
    model = build_model(cfg, ThetaInit(std=opts.theta_init_std, base_rates=base)).to(device)
    # The fused kernel updates all 21M parameters in one pass; the default per-tensor loop
    # costs as much as the forward and backward passes together on CPU.
    optim = torch.optim.Adam(
        model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay, fused=True
    )
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optim, mode="max", factor=opts.lr_factor, patience=opts.lr_patience
    )
    dtrain = DeviceMatrix(train, device)
    pair_q = dtrain.pair_query() if opts.batching == "rows" else None
    prior_rank = train.llm_base_rates(smoothing=1.0)
    result = FitResult(model=model)
    best_acc, best_state, bad_epochs = -math.inf, None, 0
    epoch_times = []
    log = open(opts.log_path, "a") if opts.log_path else None  # noqa: SIM115
    try:
        for epoch in range(1, opts.epochs + 1):
            model.train()
            t0 = time.perf_counter()
            if opts.batching == "query":
                batches = dtrain.query_batches(opts.batch_queries, gen)
                n_batches = math.ceil(train.n_queries / opts.batch_queries)
            elif opts.batching == "rows":
                batches = dtrain.row_batches(opts.batch_rows, gen)
                n_batches = math.ceil(train.n_pairs / opts.batch_rows)
            else:
                raise ValueError(f"batching must be 'query' or 'rows', got {opts.batching!r}")
            if opts.max_steps_per_epoch:
                n_batches = min(n_batches, opts.max_steps_per_epoch)
            bar = tqdm(
                total=n_batches,
                desc=f"epoch {epoch}/{opts.epochs}",
                disable=not opts.progress,
                leave=False,
                file=sys.stderr,
            )
            loss_sum, rows_sum = 0.0, 0
            for step, batch in enumerate(batches):
                if step >= n_batches:
                    break
                if opts.batching == "query":
                    v, pos, llm, y = dtrain.query_batch(batch)
                else:
                    assert pair_q is not None
                    v, pos = dtrain.emb[pair_q[batch]], torch.arange(len(batch), device=device)
                    llm, y = dtrain.llm[batch], dtrain.y[batch]
                if opts.noise_std > 0:
                    v = v + opts.noise_std * torch.randn(v.shape, generator=gen).to(device)
                alpha, beta = model.item_params(v)
                logits = model.pair_logits(alpha, beta, pos, llm)
                bce = F.binary_cross_entropy_with_logits(logits, y)
                loss = bce + _theta_penalty(model, opts, train.n_pairs)
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                model.update_balance()
                loss_sum += bce.item() * len(y)
                rows_sum += len(y)
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / rows_sum:.4f}")
            bar.close()
            epoch_times.append(time.perf_counter() - t0)
            rec: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": loss_sum / max(rows_sum, 1),
                "lr": optim.param_groups[0]["lr"],
                "seconds": round(epoch_times[-1], 3),
            }
            if val is not None and val.n_pairs > 0:
                ev = evaluate(model, val, device, benchmarks=val_benchmarks, prior_rank=prior_rank)
                c = ev["correctness"]
                rec.update(
                    val_accuracy=c["accuracy"],
                    val_auc=c["auc"],
                    val_logloss=c["logloss"],
                    val_route_micro=ev["routing"]["router"]["micro"],
                )
                score = c["accuracy"]
                sched.step(score)
            else:
                score = -rec["train_loss"]
            improved = score > best_acc
            if improved:
                best_acc, bad_epochs, result.best_epoch = score, 0, epoch
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad_epochs += 1
            rec["best"] = improved
            result.history.append(rec)
            if log:
                log.write(json.dumps(rec) + "\n")
                log.flush()
            if opts.on_epoch is not None:
                opts.on_epoch(rec)
            if opts.progress:
                msg = " ".join(
                    f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()
                )
                print(msg, file=sys.stderr, flush=True)
            if bad_epochs >= opts.patience:
                break
    finally:
        if log:
            log.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.seconds_per_epoch = float(np.mean(epoch_times)) if epoch_times else float("nan")
    return result


# ---------------------------------------------------------------------------------------------
# command line


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
    src.add_argument("--embedder", default=None, help="sentence-transformers name or local path")
    m = p.add_argument_group("model")
    m.add_argument("--method", default="irtnet", choices=["irtnet", "mlp", "mf", "jeirt"])
    m.add_argument("--d", type=int, default=None, help="ability dimension (paper: 232)")
    m.add_argument("--n-routed", type=int, default=None, help="routed experts (paper: 39)")
    m.add_argument("--n-shared", type=int, default=1)
    m.add_argument("--top-k", type=int, default=0, help="experts per query (0 = all: dense)")
    m.add_argument("--hidden", type=int, default=None, help="expert hidden width (paper: 512)")
    m.add_argument("--expert-dim", type=int, default=None, help="expert output (paper: 256)")
    m.add_argument("--no-llm-bias", action="store_true", help="drop the per-LLM offset")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--lr", type=float, default=None, help="Adam lr (paper: 1e-4; --demo: 3e-3)")
    t.add_argument("--dropout", type=float, default=None, help="expert dropout (paper: 0.5)")
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--noise", type=float, default=0.05)
    t.add_argument("--batching", choices=["query", "rows"], default="query")
    t.add_argument("--batch-queries", type=int, default=64)
    t.add_argument("--batch-rows", type=int, default=2048)
    t.add_argument("--patience", type=int, default=5)
    t.add_argument("--theta-init-std", type=float, default=0.1)
    t.add_argument("--theta-prior-std", type=float, default=1.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def model_config(args: argparse.Namespace, embed_dim: int, n_llms: int) -> IrtNetConfig:
    small = args.demo
    cfg = IrtNetConfig(
        method="irtnet" if args.method == "mlp" else args.method,
        embed_dim=embed_dim,
        d=args.d or (8 if small else 232),
        n_llms=n_llms,
        llm_bias=not args.no_llm_bias,
        hidden_dim=args.hidden or (64 if small else 512),
        expert_dim=args.expert_dim or (32 if small else 256),
        n_shared=args.n_shared,
        n_routed=args.n_routed if args.n_routed is not None else (3 if small else 39),
        top_k=args.top_k,
        dropout=args.dropout if args.dropout is not None else (0.1 if small else 0.5),
    )
    return mlp_config_matching(cfg) if args.method == "mlp" else cfg


def options_from_args(args: argparse.Namespace, out: Path) -> TrainOptions:
    return TrainOptions(
        epochs=args.epochs,
        lr=args.lr if args.lr is not None else (3e-3 if args.demo else 1e-4),
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
        progress=not args.quiet,
        log_path=out / "log.jsonl",
    )


def load_data(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """(dataset with embeddings, synthetic truth or None, embedder info)."""
    from irt_fast import data as irt_data

    truth = None
    if args.demo or args.data is None:
        from irt_fast.synthetic import make_synthetic

        ds, truth = make_synthetic(seed=args.seed)
        emb_info = {"name": "synthetic", "dim": int(ds.embeddings.shape[1]), "normalize": True}
        return ds, truth, emb_info
    ds = irt_data.load_dataset(args.data)
    if ds.embeddings is None or args.embedder is not None and ds.embeddings is None:
        from irt_fast.embed import embed_dataset, embedder_info

        name = args.embedder or DEFAULT_EMBEDDER
        print(f"embedding {ds.n_queries} query texts with {name} …", file=sys.stderr)
        ds = embed_dataset(ds, name)
        emb_info = embedder_info(name)
    else:
        name = args.embedder or DEFAULT_EMBEDDER
        emb_info = {"name": name, "dim": int(ds.embeddings.shape[1]), "normalize": True}
    return ds, truth, emb_info


def make_split(args: argparse.Namespace, ds: Any) -> dict[str, np.ndarray]:
    from irt_fast import splits

    if args.split is not None:
        split = splits.read_split_file(args.split)
    elif args.holdout_benchmark:
        split = splits.leave_one_benchmark_out(ds, args.holdout_benchmark, seed=args.split_seed)
    else:
        split = splits.fixed_split(ds.queries["query_id"].to_numpy(), seed=args.split_seed)
    if args.train_size:
        split = dict(split)
        split["train"] = splits.subsample(split["train"], args.train_size, seed=args.seed)
    return split


def matrices(ds: Any, split: dict[str, np.ndarray]) -> dict[str, PairMatrix]:
    qid = ds.queries["query_id"].to_numpy()
    row_of = {int(q): i for i, q in enumerate(qid)}
    r = ds.responses
    out = {}
    for name in ("train", "val", "test"):
        ids = np.asarray(split.get(name, []), dtype=np.int64)
        rows = np.fromiter((row_of[int(q)] for q in ids), dtype=np.int64, count=len(ids))
        out[name] = build_pair_matrix(
            ds.embeddings,
            r["q_idx"].to_numpy(),
            r["llm_idx"].to_numpy(),
            r["correct"].to_numpy(),
            rows,
            ds.n_llms,
        )
    return out


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "log.jsonl").unlink(missing_ok=True)
    ds, truth, emb_info = load_data(args)
    print(ds.summary(), file=sys.stderr)
    split = make_split(args, ds)
    mats = matrices(ds, split)
    bench = ds.queries["benchmark"].to_numpy()
    cfg = model_config(args, int(ds.embeddings.shape[1]), ds.n_llms)
    opts = options_from_args(args, out)
    device = resolve_device(opts.device)
    print(
        f"training {args.method} on {device}: {mats['train'].n_queries} train queries "
        f"({mats['train'].n_pairs} pairs), {mats['val'].n_queries} val, {mats['test'].n_queries} test",
        file=sys.stderr,
    )
    t0 = time.perf_counter()
    fit = fit_model(
        cfg, mats["train"], mats["val"], opts, val_benchmarks=bench[mats["val"].query_rows]
    )
    train_seconds = time.perf_counter() - t0
    prior_rank = mats["train"].llm_base_rates(smoothing=1.0)
    metrics: dict[str, Any] = {
        "method": args.method,
        "config": cfg.to_json(),
        "options": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in asdict(opts).items()
            if k != "on_epoch"
        },
        "device": str(device),
        "best_epoch": fit.best_epoch,
        "epochs_run": len(fit.history),
        "seconds_per_epoch": fit.seconds_per_epoch,
        "train_seconds": train_seconds,
        "n_llms": ds.n_llms,
        "sizes": {k: {"queries": m.n_queries, "pairs": m.n_pairs} for k, m in mats.items()},
        "embedder": emb_info,
    }
    for name in ("val", "test"):
        m = mats[name]
        if m.n_pairs == 0:
            continue
        b = bench[m.query_rows]
        metrics[name] = evaluate(fit.model, m, device, benchmarks=b, prior_rank=prior_rank)
        metrics[name]["prior"] = prior_metrics(mats["train"], m, b)
    if truth is not None:
        metrics["demo_truth_recovery"] = demo_report(fit.model, ds, truth, device)
    training_meta = {
        "seed": args.seed,
        "data": str(args.data) if args.data else "synthetic",
        "best_epoch": fit.best_epoch,
        "test": metrics.get("test", {}).get("correctness"),
    }
    save_model(
        fit.model.cpu(),
        out / "model.safetensors",
        llm_names=list(ds.llm_names),
        embedder=emb_info,
        training=training_meta,
    )
    write_split_file(split, out / "split.csv")  # atomic itself
    atomic_write(
        out / "metrics.json",
        lambda tmp: Path(tmp).write_text(json.dumps(metrics, indent=2, default=float)),
    )
    print(summary_text(metrics), flush=True)
    print(f"wrote {out / 'model.safetensors'}, metrics.json, split.csv, log.jsonl", flush=True)
    return 0


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
