"""Torch baselines on the same weights as the Rust engine, and the machine's own limits.

- ``RefLoop``: the reference module shape: a Python loop over experts, each an
  ``nn.Sequential(Linear, ReLU, Linear)``, then the gate-weighted sum and the heads.
- ``Fused``: the best torch formulation we know: one GEMM for every expert's first layer (and the
  gate), one ``bmm`` for all second layers, a weighted sum, the heads.
- ``matmul_roofline`` / ``read_bandwidth``: a large fp32 GEMM and a large streaming read, timed in
  the same run, as the yardsticks the engine is judged against.

Both baselines implement docs/format.md's irtnet function (dense or top-k) in eval mode.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor, nn

from training.model import topk_gate


def read_config(path: str | Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["config"])


class _Base(nn.Module):
    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.cfg = read_config(path)
        assert self.cfg["method"] == "irtnet", "baselines cover the MoE model"
        t = load_file(str(path))
        self.t = t
        self.ns, self.nr = self.cfg["n_shared"], self.cfg["n_routed"]
        self.top_k = self.cfg["top_k"]
        self.alpha = nn.Linear(self.cfg["expert_dim"], self.cfg["d"])
        self.beta = nn.Linear(self.cfg["expert_dim"], 1)
        with torch.no_grad():
            self.alpha.weight.copy_(t["alpha.weight"])
            self.alpha.bias.copy_(t["alpha.bias"])
            self.beta.weight.copy_(t["beta.weight"])
            self.beta.bias.copy_(t["beta.bias"])
        self.theta = t["theta"]
        self.llm_bias = t.get("llm_bias")
        if self.nr:
            self.gate = nn.Linear(self.cfg["embed_dim"], self.nr)
            with torch.no_grad():
                self.gate.weight.copy_(t["gate.weight"])
                self.gate.bias.copy_(t["gate.bias"])
            self.selection_bias = t["gate.selection_bias"]

    def gate_weights(self, g: Tensor) -> Tensor:
        # The training model's gate: one definition of the format's top-k rule.
        return topk_gate(g, self.selection_bias, self.top_k)[0]

    def hidden(self, v: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def predict_proba(self, v: Tensor) -> Tensor:
        h = self.hidden(v)
        z = self.alpha(h) @ self.theta.t() - self.beta(h)
        if self.llm_bias is not None:
            z = z + self.llm_bias
        return torch.sigmoid(z)

    @torch.no_grad()
    def route(self, v: Tensor) -> tuple[Tensor, Tensor]:
        p = self.predict_proba(v)
        best = p.max(1)
        return best.indices, best.values


class RefLoop(_Base):
    """The reference module: one ``nn.Sequential`` per expert, looped over in Python."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        t = self.t
        experts = []
        for e in range(self.ns + self.nr):
            w1, w2 = t["experts.w1"][e], t["experts.w2"][e]
            seq = nn.Sequential(
                nn.Linear(w1.shape[1], w1.shape[0]), nn.ReLU(), nn.Linear(w2.shape[1], w2.shape[0])
            )
            with torch.no_grad():
                seq[0].weight.copy_(w1)
                seq[0].bias.copy_(t["experts.b1"][e])
                seq[2].weight.copy_(w2)
                seq[2].bias.copy_(t["experts.b2"][e])
            experts.append(seq)
        self.experts = nn.ModuleList(experts)
        del self.t
        self.eval()

    def hidden(self, v: Tensor) -> Tensor:
        h = sum(self.experts[s](v) for s in range(self.ns))
        if self.nr:
            w = self.gate_weights(self.gate(v))
            for i in range(self.nr):
                h = h + w[:, i : i + 1] * self.experts[self.ns + i](v)
        return h


class Fused(_Base):
    """One GEMM for all first layers and the gate, ``bmm`` for the second layers."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        t = self.t
        e, h, dm = t["experts.w1"].shape
        w_in = t["experts.w1"].reshape(e * h, dm)
        b_in = t["experts.b1"].reshape(e * h)
        if self.nr:
            w_in = torch.cat([w_in, t["gate.weight"]])
            b_in = torch.cat([b_in, t["gate.bias"]])
        self.w_in_t = w_in.t().contiguous()  # [D, E·H + R]
        self.b_in = b_in
        self.w2_t = t["experts.w2"].transpose(1, 2).contiguous()  # [E, H, O]
        self.b2 = t["experts.b2"].unsqueeze(1)  # [E, 1, O]
        self.e, self.h = e, h
        del self.t
        self.eval()

    def to_dtype(self, dtype: torch.dtype) -> Fused:
        """Every weight (and so every product) in ``dtype``; inputs must be cast too."""
        for name in ("w_in_t", "b_in", "w2_t", "b2", "theta", "llm_bias", "selection_bias"):
            t = getattr(self, name, None)
            if t is not None:
                setattr(self, name, t.to(dtype))
        return self.to(dtype)

    def hidden(self, v: Tensor) -> Tensor:
        b = v.shape[0]
        z = torch.addmm(self.b_in, v, self.w_in_t)
        eh = self.e * self.h
        h1 = torch.relu(z[:, :eh]).reshape(b, self.e, self.h).transpose(0, 1)  # [E, B, H]
        out = torch.baddbmm(self.b2, h1, self.w2_t)  # [E, B, O]
        h = out[: self.ns].sum(0)
        if self.nr:
            w = self.gate_weights(z[:, eh:])
            h = h + torch.einsum("br,rbo->bo", w, out[self.ns :])
        return h


class FusedBf16(Fused):
    """The fastest bf16 torch we could write: every weight in bfloat16, the first layers (and
    the gate) as one ``Linear``, the second layers as one ``Linear`` over all experts' hidden
    units scaled by their gate weights (the engine's formulation: one long GEMM beats ``bmm``
    in bf16), both weight matrices prepacked for oneDNN (``torch.utils.mkldnn``, measured 1.3×
    faster than plain bf16 tensors at batch 1,024 here) when this torch has it. Run it under
    ``torch.inference_mode`` with bf16 inputs."""

    def __init__(self, path: str | Path, prepack: bool = True) -> None:
        super().__init__(path)
        bf = torch.bfloat16
        e, h, o = self.w2_t.shape[0], self.h, self.w2_t.shape[2]
        self.l1 = nn.Linear(self.w_in_t.shape[0], self.w_in_t.shape[1])
        self.l2 = nn.Linear(e * h, o, bias=False)
        with torch.no_grad():
            self.l1.weight.copy_(self.w_in_t.t())
            self.l1.bias.copy_(self.b_in)
            self.l2.weight.copy_(self.w2_t.reshape(e * h, o).t())
        self.b2_eo = self.b2.reshape(e, o)
        del self.w2_t, self.w_in_t, self.b_in
        self.to_dtype(bf)
        self.b2_eo = self.b2_eo.to(bf)
        self.prepacked = False
        if prepack:
            try:
                import torch.utils.mkldnn as mkldnn

                self.l1 = mkldnn.to_mkldnn(self.l1.eval(), bf)
                self.l2 = mkldnn.to_mkldnn(self.l2.eval(), bf)
                self.prepacked = True
            except (ImportError, RuntimeError, AttributeError):  # a torch without oneDNN
                pass

    def _linear(self, layer: nn.Module, x: Tensor) -> Tensor:
        if self.prepacked:
            return layer(x.to_mkldnn(torch.bfloat16)).to_dense()
        return layer(x)

    def hidden(self, v: Tensor) -> Tensor:
        b = v.shape[0]
        z = self._linear(self.l1, v)
        eh = self.e * self.h
        w = torch.ones(b, self.e, dtype=v.dtype)
        if self.nr:
            w[:, self.ns :] = self.gate_weights(z[:, eh:])
        h1 = (torch.relu(z[:, :eh]).reshape(b, self.e, self.h) * w[:, :, None]).reshape(b, eh)
        return self._linear(self.l2, h1) + w @ self.b2_eo


def _best_time(f, repeat: int) -> float:
    f()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def matmul_roofline(n: int = 2048, repeat: int = 5) -> float:
    """fp32 GFLOP/s of a large square torch matmul on the current torch threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = _best_time(lambda: torch.mm(a, b), repeat)
    return 2 * n**3 / t / 1e9


def read_bandwidth(n_bytes: int = 256 << 20, repeat: int = 5) -> float:
    """GB/s of a streaming read (a sum over a buffer far larger than the caches)."""
    x = torch.ones(n_bytes // 4)
    t = _best_time(lambda: x.sum(), repeat)
    return n_bytes / t / 1e9
