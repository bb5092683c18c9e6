"""The training loop: Adam, embedding noise, a plateau schedule and early stopping, plus the
evaluation passes it runs on validation (``evaluate``, ``predict_pairs``, ``prior_metrics``).

Imported by the CLI (training.fit), the evaluation suite and the experiments; no I/O besides the
optional per-epoch log.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from training import defaults, distributed
from training.data import DeviceMatrix, PairMatrix
from training.metrics import (
    concat_outcomes,
    correctness_metrics,
    routing_correct,
    summarize_routing,
)
from training.model import BatchShare, IrtModel, IrtNetConfig, ThetaInit, build_model
from training.numerics import keep_normal


@dataclass
class TrainOptions:
    """The training recipe. ``lr``, ``epochs``, ``patience``, ``lr_patience``, ``stop_metric``
    and ``llm_decay`` left at None are chosen from the data by ``training.defaults``
    (``old_recipe=True``: the paper's fixed values); ``FitResult.recipe`` records every choice
    and why. θ's initialisation and prior: see docs/training.md."""

    epochs: int | None = None  # None: the cap from the data (training.defaults.choose_epochs)
    lr: float | None = None  # None: from the data (training.defaults.choose_lr)
    weight_decay: float = 1e-4
    noise_std: float = 0.05
    batching: str = "query"  # "query" (query-major) or "rows" (the paper's row batches)
    batch_queries: int = 64
    batch_rows: int = 2048
    # early stopping and ReduceLROnPlateau on the validation stop_metric, in epochs;
    # None: from the data (training.defaults: 5 and 2 on MMLU-Pro)
    patience: int | None = None
    lr_patience: int | None = None
    lr_factor: float = 0.1
    # "logloss" or "accuracy" on validation; None: from the data (training.defaults)
    stop_metric: str | None = None
    old_recipe: bool = False  # the paper's fixed recipe (lr 1e-4, accuracy stopping)
    # weight decay on θ and the per-LLM offsets too; None: from the data (no), old recipe: yes
    llm_decay: bool | None = None
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


def resolve_recipe(opts: TrainOptions, train: PairMatrix) -> tuple[TrainOptions, dict[str, Any]]:
    """``opts`` with the recipe's None fields filled in from the data (or the old recipe), and the
    record of those choices (``training.defaults.record``) for metrics.json and the weights
    metadata. Values the caller set are kept and recorded as the user's. (The item-network
    size is the caller's: ``training.defaults.choose_preset``.)"""
    shape = defaults.Shape(train.n_queries, train.n_llms, train.n_pairs, opts.batch_queries)
    choices = defaults.resolve(
        shape,
        old=opts.old_recipe,
        lr=opts.lr,
        epochs=opts.epochs,
        patience=opts.patience,
        lr_patience=opts.lr_patience,
        stop_metric=opts.stop_metric,
        llm_decay=opts.llm_decay,
    )
    del choices["preset"]
    rec = defaults.record(choices, shape)
    resolved = replace(
        opts,
        lr=choices["lr"].value,
        epochs=choices["epochs"].value,
        patience=choices["patience"].value,
        lr_patience=choices["lr_patience"].value,
        stop_metric=choices["stop_metric"].value,
        llm_decay=choices["llm_decay"].value,
    )
    return resolved, rec


@dataclass
class FitResult:
    model: IrtModel
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    seconds_per_epoch: float = float("nan")
    # The recipe actually used: training.defaults.record(...) (lr, stop metric, ... and why)
    recipe: dict[str, Any] = field(default_factory=dict)


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
        P_t = torch.sigmoid(model.logits_from_params(alpha, beta))
        pair_p.append(P_t[pos, llm].cpu().numpy())
        P = P_t.cpu().numpy()
        parts.append(routing_correct(P, m.dense_labels(lo, hi), prior_rank))
    p = np.concatenate(pair_p) if pair_p else np.zeros(0, np.float32)
    res: dict[str, Any] = {"correctness": correctness_metrics(m.y, p)}
    res["routing"] = summarize_routing(concat_outcomes(parts), benchmarks)
    return res


def validation_record(
    model: IrtModel,
    val: PairMatrix,
    device: torch.device,
    benchmarks: np.ndarray | None,
    prior_rank: np.ndarray | None,
) -> dict[str, float]:
    """The validation numbers an epoch's log record holds (``evaluate`` on ``val``)."""
    ev = evaluate(model, val, device, benchmarks=benchmarks, prior_rank=prior_rank)
    c = ev["correctness"]
    return {
        "val_accuracy": c["accuracy"],
        "val_auc": c["auc"],
        "val_logloss": c["logloss"],
        "val_route_micro": ev["routing"]["router"]["micro"],
    }


def prior_metrics(
    train: PairMatrix, m: PairMatrix, benchmarks: np.ndarray | None
) -> dict[str, Any]:
    """The per-LLM prior: predict each LLM's training accuracy for every query."""
    rates = train.llm_base_rates(smoothing=0.0)
    p = rates[m.llm]
    return {"correctness": correctness_metrics(m.y, p)}


def param_groups(
    model: IrtModel, weight_decay: float, *, llm_decay: bool = False
) -> list[dict[str, Any]]:
    """Weight decay on the item network only (``llm_decay``: on everything, as the paper's fixed
    recipe does). θ and the per-LLM offsets are regularised by their own prior
    (``theta_prior_std``, scaled by the number of pairs, so it is a MAP prior whatever the
    shape): weight decay on the mean loss is a prior of precision ``weight_decay`` against
    each LLM's data share of 1/n_llms, which at thousands of LLMs outweighs the data
    and pulled every LLM's offset to 0 (MF at 6,000 LLMs got worse from its first epoch)."""
    per_llm = {id(model.theta)} | ({id(model.llm_bias)} if model.llm_bias is not None else set())
    params = list(model.parameters())
    return [
        {"params": [p for p in params if id(p) not in per_llm], "weight_decay": weight_decay},
        {
            "params": [p for p in params if id(p) in per_llm],
            "weight_decay": weight_decay if llm_decay else 0.0,
        },
    ]


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
    """Train with Adam, embedding noise, ReduceLROnPlateau and early stopping on the validation
    ``stop_metric`` (log-loss unless set); returns the best checkpoint (a real copy of its
    weights) loaded into the model, and the recipe used (``FitResult.recipe``).

    Under torchrun (an initialised process group) every rank runs this same loop on its share
    of each global batch, and every rank returns the same model: ``training.distributed``."""
    opts, recipe = resolve_recipe(opts, train)
    assert None not in (opts.epochs, opts.lr, opts.patience, opts.lr_patience)
    world = distributed.current()
    device = world.device(resolve_device(opts.device))
    torch.manual_seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed)
    base = torch.from_numpy(train.llm_base_rates(smoothing=1.0))
    model = build_model(cfg, ThetaInit(std=opts.theta_init_std, base_rates=base)).to(device)
    net = world.wrap(model, device)  # DDP when several ranks: the training step calls net
    # The fused kernel updates all 21M parameters in one pass; the default per-tensor loop
    # costs as much as the forward and backward passes together on CPU.
    groups = param_groups(model, opts.weight_decay, llm_decay=bool(opts.llm_decay))
    optim = torch.optim.Adam(groups, lr=opts.lr, fused=True)
    # parameters, gradients and Adam's state never go subnormal (slow on x86): training.numerics
    recipe["numerics"] = keep_normal(optim, device)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optim, mode="max", factor=opts.lr_factor, patience=opts.lr_patience
    )
    dtrain = DeviceMatrix(train, device)
    pair_q = dtrain.pair_query() if opts.batching == "rows" else None
    prior_rank = train.llm_base_rates(smoothing=1.0)
    result = FitResult(model=model, recipe=recipe)
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
                share = BatchShare(len(batch), world.share(len(batch)))  # all of it when alone
                mine = batch[share.rows.to(device)]
                if opts.batching == "query":
                    v, pos, llm, y = dtrain.query_batch(mine)
                    n_pairs = dtrain.pair_count(batch)
                else:
                    assert pair_q is not None
                    v, pos = dtrain.emb[pair_q[mine]], torch.arange(len(mine), device=device)
                    llm, y = dtrain.llm[mine], dtrain.y[mine]
                    n_pairs = len(batch)
                if opts.noise_std > 0:  # drawn for the global batch: the same for any world size
                    noise = torch.randn((share.n, v.shape[1]), generator=gen)[share.rows]
                    v = v + opts.noise_std * noise.to(device)
                logits = net(v, pos, llm, share)
                bce_sum = F.binary_cross_entropy_with_logits(logits, y, reduction="sum")
                # DDP averages the ranks' gradients: world.size × (this share's summed loss /
                # the global batch's pairs) averages to the global batch's mean loss.
                loss = bce_sum * (world.size / n_pairs) + _theta_penalty(model, opts, train.n_pairs)
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                model.update_balance(world.sum_)  # every rank nudges by the global load
                loss_sum += bce_sum.item()
                rows_sum += len(y)
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / max(rows_sum, 1):.4f}")
            bar.close()
            epoch_times.append(time.perf_counter() - t0)
            sums = torch.tensor([loss_sum, rows_sum], dtype=torch.float64, device=device)
            loss_sum, rows_sum = world.sum_(sums).tolist()  # the epoch's loss over every rank
            rec: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": loss_sum / max(rows_sum, 1),
                "lr": optim.param_groups[0]["lr"],
                "seconds": round(epoch_times[-1], 3),
            }
            if val is not None and val.n_pairs > 0:
                # Rank 0 validates; every rank takes its numbers, hence the same decisions.
                args = (model, val, device, val_benchmarks, prior_rank)
                rec.update(world.broadcast(validation_record(*args) if world.is_main else None))
                # higher is better for both: the schedule and early stopping share the score
                score = (
                    rec["val_accuracy"] if opts.stop_metric == "accuracy" else -rec["val_logloss"]
                )
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
