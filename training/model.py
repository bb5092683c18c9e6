"""IrtNet and its baselines as torch modules: P(correct | m, q) = sigmoid(α(v_q)·θ_m − β(v_q) + b_m).

No I/O here: see training/export.py for the weights file and docs/format.md for its layout.
Every model is an ``IrtModel``: an *item network* (query embedding → α, β) plus a θ table and an
optional per-LLM offset. The item networks are

- ``MoEItemNet`` ("irtnet"): shared + routed experts, a gate, α/β heads. ``n_routed = 0`` is the
  plain-MLP ablation (one expert of the same shape, or wider via ``hidden_dim``).
- ``MFItemNet`` ("mf"): EmbedLLM matrix factorisation, α = w ⊙ (P v + p), β = −c.
- ``JEIrtItemNet`` ("jeirt"): JE-IRT, b = MLP(v), α = b/‖b‖, β = ‖b‖.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from training.configs import (  # noqa: F401 - re-exported: the configs' historical home
    METHODS,
    IrtNetConfig,
    JeIrtConfig,
    MfConfig,
    ModelConfig,
    config_from_json,
    method_config,
)


@dataclass(frozen=True)
class BatchShare:
    """The rows of a global batch of ``n`` rows that this process computes (``rows``, int64 on
    the CPU, in order). One process computes all of them; under DistributedDataParallel each rank
    computes its share (``training.distributed.World.share``)."""

    n: int
    rows: Tensor


class BatchDropout(nn.Dropout):
    """Dropout whose mask is drawn for the whole global batch and then sliced to this process's
    rows, so that every world size draws the same masks from the same generator state: a
    training run gives the same model in one process and under DDP. Alone (``share`` covering
    the batch) the draws and the result are those of ``nn.Dropout``: the same bernoulli draws
    over a tensor of the same shape, the same scaling."""

    def forward(self, x: Tensor, share: BatchShare | None = None) -> Tensor:
        if share is None or not self.training or self.p == 0:
            return super().forward(x)
        mask = F.dropout(x.new_ones((share.n, *x.shape[1:])), self.p)  # 0 or 1/(1-p)
        return x * mask[share.rows.to(x.device)]


def _linear_init_(weight: Tensor, bias: Tensor | None, fan_in: int) -> None:
    """nn.Linear's default init (kaiming-uniform with a=√5, i.e. U(±1/√fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(weight, -bound, bound)
    if bias is not None:
        nn.init.uniform_(bias, -bound, bound)


class MoEItemNet(nn.Module):
    """Dense (or top-k) mixture of experts → α, β.

    Experts are stored stacked (``w1: [E, hidden, in]`` …) rather than as a ModuleList: the
    first layers of all experts then run as one GEMM, the second layers as one batched GEMM,
    and the export is a plain copy. Experts ``0..n_shared-1`` are the shared (always-on) ones.
    """

    def __init__(self, cfg: IrtNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        e, h, o, i = cfg.n_shared + cfg.n_routed, cfg.hidden_dim, cfg.expert_dim, cfg.embed_dim
        self.w1 = nn.Parameter(torch.empty(e, h, i))
        self.b1 = nn.Parameter(torch.empty(e, h))
        self.w2 = nn.Parameter(torch.empty(e, o, h))
        self.b2 = nn.Parameter(torch.empty(e, o))
        for k in range(e):
            _linear_init_(self.w1.data[k], self.b1.data[k], i)
            _linear_init_(self.w2.data[k], self.b2.data[k], h)
        self.gate = nn.Linear(i, cfg.n_routed) if cfg.n_routed > 0 else None
        self.register_buffer("selection_bias", torch.zeros(cfg.n_routed))
        self.dropout = BatchDropout(cfg.dropout)
        self.alpha = nn.Linear(o, cfg.d)
        self.beta = nn.Linear(o, 1)
        # Load counted from the last training forward, for the balancing update.
        self._last_load: Tensor | None = None

    def gate_weights(self, v: Tensor) -> Tensor:
        """Per-query weights over the routed experts, ``[B, n_routed]`` (see ``topk_gate``)."""
        assert self.gate is not None
        w, load = topk_gate(self.gate(v), self.selection_bias, self.cfg.top_k)
        if self.training:
            self._last_load = load
        return w

    @torch.no_grad()
    def update_balance(self, reduce: Callable[[Tensor], Tensor] | None = None) -> None:
        """Auxiliary-loss-free balancing: nudge each expert's selection bias toward even load.
        A no-op in the dense setting (every expert selected for every query).

        Args:
            reduce: sums the load over the training processes (``World.sum_``), so that every
                rank nudges by the global batch's load and the biases stay equal.
        """
        load, self._last_load = self._last_load, None
        if load is None or not 0 < self.cfg.top_k < self.cfg.n_routed:
            return  # dense: even load by construction (and no all-reduce of it)
        if reduce is not None:
            load = reduce(load)
        self.selection_bias += self.cfg.balance_rate * torch.sign(load.mean() - load)

    def hidden(self, v: Tensor, share: BatchShare | None = None) -> Tensor:
        cfg = self.cfg
        e, hdim = self.w1.shape[0], self.w1.shape[1]
        b = v.shape[0]
        # All experts' first layers as one GEMM: [B, in] x [in, E*H].
        h1 = torch.addmm(self.b1.reshape(-1), v, self.w1.reshape(e * hdim, -1).t())
        h1 = self.dropout(F.relu(h1), share).reshape(b, e, hdim).transpose(0, 1)  # [E, B, H]
        out = torch.baddbmm(self.b2.unsqueeze(1), h1, self.w2.transpose(1, 2))  # [E, B, O]
        h = out[: cfg.n_shared].sum(0)
        if cfg.n_routed > 0:
            w = self.gate_weights(v)  # [B, R]
            h = h + torch.einsum("br,rbo->bo", w, out[cfg.n_shared :])
        return h

    def forward(self, v: Tensor, share: BatchShare | None = None) -> tuple[Tensor, Tensor]:
        h = self.hidden(v, share)
        return self.alpha(h), self.beta(h).squeeze(-1)

    def export_tensors(self) -> dict[str, Tensor]:
        t = {
            "experts.w1": self.w1,
            "experts.b1": self.b1,
            "experts.w2": self.w2,
            "experts.b2": self.b2,
            "alpha.weight": self.alpha.weight,
            "alpha.bias": self.alpha.bias,
            "beta.weight": self.beta.weight,
            "beta.bias": self.beta.bias,
        }
        if self.gate is not None:
            t["gate.weight"] = self.gate.weight
            t["gate.bias"] = self.gate.bias
            t["gate.selection_bias"] = self.selection_bias
        return t


def _stable_topk(scores: Tensor, k: int) -> Tensor:
    """Indices of the k largest scores per row, ties broken toward the lower index (the
    format's rule; torch.topk leaves tie order unspecified)."""
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    return order[..., :k]


def topk_gate(logits: Tensor, selection_bias: Tensor, top_k: int) -> tuple[Tensor, Tensor]:
    """The format's gate (docs/format.md): softmax of the gate ``logits`` ``[B, R]`` over the
    ``top_k`` experts selected by ``logits + selection_bias`` (ties to the lower index), zero
    elsewhere; dense softmax when ``top_k >= R``. Returns (weights ``[B, R]``, per-expert load
    ``[R]``: how many queries selected each expert)."""
    n_routed = logits.shape[-1]
    if top_k >= n_routed:
        load = logits.new_full((n_routed,), float(logits.shape[0]))  # a rank's share may be empty
        return torch.softmax(logits, dim=-1), load
    scores = (logits + selection_bias).detach()
    idx = _stable_topk(scores, top_k)
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, idx, True)
    w = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
    return w, mask.sum(0).to(logits.dtype)


class MFItemNet(nn.Module):
    """EmbedLLM: logit = out(θ_m ⊙ proj(v)) = (out.w ⊙ proj(v))·θ_m + out.b."""

    def __init__(self, cfg: MfConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Linear(cfg.embed_dim, cfg.d)
        self.out = nn.Linear(cfg.d, 1)

    def forward(self, v: Tensor, share: BatchShare | None = None) -> tuple[Tensor, Tensor]:
        alpha = self.proj(v) * self.out.weight[0]
        beta = (-self.out.bias).expand(v.shape[0])
        return alpha, beta

    def export_tensors(self) -> dict[str, Tensor]:
        return {
            "proj.weight": self.proj.weight,
            "proj.bias": self.proj.bias,
            "out.weight": self.out.weight,
            "out.bias": self.out.bias,
        }


class JEIrtItemNet(nn.Module):
    """JE-IRT: b = MLP(v); direction = semantics, norm = difficulty."""

    def __init__(self, cfg: JeIrtConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.l1 = nn.Linear(cfg.embed_dim, cfg.hidden_dim)
        self.l2 = nn.Linear(cfg.hidden_dim, cfg.d)
        self.dropout = BatchDropout(cfg.dropout)

    def forward(self, v: Tensor, share: BatchShare | None = None) -> tuple[Tensor, Tensor]:
        b = self.l2(self.dropout(F.relu(self.l1(v)), share))
        norm = b.norm(dim=-1)
        return b / norm.clamp_min(1e-12).unsqueeze(-1), norm

    def export_tensors(self) -> dict[str, Tensor]:
        return {
            "mlp.w1": self.l1.weight,
            "mlp.b1": self.l1.bias,
            "mlp.w2": self.l2.weight,
            "mlp.b2": self.l2.bias,
        }


_ITEM_NETS: dict[str, type[nn.Module]] = {
    "irtnet": MoEItemNet,
    "mf": MFItemNet,
    "jeirt": JEIrtItemNet,
}


@dataclass
class ThetaInit:
    """How θ and the per-LLM offsets start. ``base_rates`` (per LLM, in (0,1)) sets each
    offset to the logit of that LLM's training accuracy, so an untrained model already
    predicts the per-LLM prior."""

    std: float = 0.1
    base_rates: Tensor | None = field(default=None, repr=False)


# pair_logits computes the dense [B, n_llms] block when the pairs fill at least 1/8 of it.
DENSE_MIN_FILL = 8


class IrtModel(nn.Module):
    """θ table + per-LLM offset + an item network. ``forward`` scores (query, LLM) pairs."""

    def __init__(self, cfg: ModelConfig, theta_init: ThetaInit | None = None) -> None:
        super().__init__()
        cfg = method_config(cfg)
        self.cfg = cfg
        self.item_net = _ITEM_NETS[cfg.method](cfg)
        init = theta_init or ThetaInit()
        self.theta = nn.Parameter(torch.randn(cfg.n_llms, cfg.d) * init.std)
        if cfg.llm_bias:
            b = torch.zeros(cfg.n_llms)
            if init.base_rates is not None:
                p = init.base_rates.to(torch.float32).clamp(1e-3, 1 - 1e-3)
                b = torch.log(p) - torch.log1p(-p)
            self.llm_bias = nn.Parameter(b)
        else:
            self.register_parameter("llm_bias", None)

    def item_params(self, v: Tensor, share: BatchShare | None = None) -> tuple[Tensor, Tensor]:
        """α ``[B, d]`` and β ``[B]`` for query embeddings ``v [B, embed_dim]`` (in training,
        ``share`` says which rows of the global batch ``v`` holds: see ``BatchDropout``)."""
        return self.item_net(v, share)

    def forward(self, v: Tensor, q: Tensor, m: Tensor, share: BatchShare | None = None) -> Tensor:
        """The training step's logits: pairs (q[i], m[i]) of the queries ``v`` (``pair_logits``).
        DistributedDataParallel wraps this call to all-reduce the gradients it produces.

        Args:
            v: query embeddings ``[B, embed_dim]``.
            q: each pair's row of ``v``.
            m: each pair's LLM.
            share: the rows of the global batch ``v`` holds (dropout masks).

        Returns:
            One logit per pair.
        """
        alpha, beta = self.item_params(v, share)
        return self.pair_logits(alpha, beta, q, m)

    def pair_logits(self, alpha: Tensor, beta: Tensor, q: Tensor, m: Tensor) -> Tensor:
        """Logits of the pairs (q[i], m[i]); q indexes rows of alpha/beta, m LLMs.

        When the pairs fill at least 1/``DENSE_MIN_FILL`` of the ``[B, n_llms]`` block (a
        leaderboard: thousands of LLMs, most answering every question), the whole block is one
        matrix product and the pairs are read from it: 8× faster per step at 6,000 LLMs × 64
        questions than gathering θ and α per pair, whose backward is a scatter-add (0.045 s
        against 0.37 s per step on one thread, the two alternating in one run: docs/training.md).
        Memory: at most ``DENSE_MIN_FILL`` × the pairs."""
        if q.numel() * DENSE_MIN_FILL >= alpha.shape[0] * self.theta.shape[0]:
            return self.logits_from_params(alpha, beta)[q, m]
        logit = (alpha[q] * self.theta[m]).sum(-1) - beta[q]
        if self.llm_bias is not None:
            logit = logit + self.llm_bias[m]
        return logit

    def logits(self, v: Tensor) -> Tensor:
        """Logits for every LLM, ``[B, n_llms]``."""
        return self.logits_from_params(*self.item_params(v))

    def logits_from_params(self, alpha: Tensor, beta: Tensor) -> Tensor:
        """Logits for every LLM from already computed item parameters, ``[B, n_llms]``."""
        out = alpha @ self.theta.t() - beta.unsqueeze(-1)
        if self.llm_bias is not None:
            out = out + self.llm_bias
        return out

    def predict_proba(self, v: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(v))

    def update_balance(self, reduce: Callable[[Tensor], Tensor] | None = None) -> None:
        """The mixture's load-balancing step (``MoEItemNet.update_balance``); else nothing."""
        if isinstance(self.item_net, MoEItemNet):
            self.item_net.update_balance(reduce)

    def export_tensors(self) -> dict[str, Tensor]:
        t = dict(self.item_net.export_tensors())  # type: ignore[operator]
        t["theta"] = self.theta
        if self.llm_bias is not None:
            t["llm_bias"] = self.llm_bias
        return t

    def load_exported(self, tensors: dict[str, Tensor]) -> None:
        """Inverse of ``export_tensors``: copy tensors (by export name) into this model."""
        own = self.export_tensors()
        missing = sorted(set(own) - set(tensors))
        if missing:
            raise KeyError(f"missing tensors: {missing}")
        with torch.no_grad():
            for name, dst in own.items():
                src = tensors[name]
                if tuple(src.shape) != tuple(dst.shape):
                    raise ValueError(
                        f"tensor {name!r}: expected shape {tuple(dst.shape)}, got {tuple(src.shape)}"
                    )
                dst.copy_(src)


def build_model(cfg: ModelConfig, theta_init: ThetaInit | None = None) -> IrtModel:
    return IrtModel(cfg, theta_init)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def mlp_config_matching(cfg: IrtNetConfig) -> IrtNetConfig:
    """The paper's no-MoE ablation: one expert whose hidden width gives about the same
    parameter count as ``cfg``'s mixture (gate included)."""
    e = cfg.n_shared + cfg.n_routed
    per_hidden = cfg.embed_dim + 1 + cfg.expert_dim  # w1 row + b1 + w2 column
    moe = e * (cfg.hidden_dim * per_hidden + cfg.expert_dim) + cfg.n_routed * (cfg.embed_dim + 1)
    hidden = max(1, round((moe - cfg.expert_dim) / per_hidden))
    return cfg.with_(n_shared=1, n_routed=0, top_k=0, hidden_dim=hidden)
