"""The calibrated estimator of the onboarding evaluation: a small regression, learned by leaving
trained LLMs out, from what a probe sees after k answers (the model estimate and the AIPW
estimate) to the true accuracy. Measured, it did not earn a place in the probe (its fit on the
trained LLMs does not carry over to LLMs unlike them: docs/results/onboard), so it lives here.

``simulate`` onboards LLMs whose answers are all known (the trained ones, on questions split
into a pseudo-pool and a pseudo-target) with the ``neyman`` design and records, per k, the two
estimates and the truth; ``fit_calibration`` fits, per k, truth ≈ c₀ + c₁·model + c₂·aipw by
least squares, and the residual variance beyond the pseudo-target's own Bernoulli noise.
``Calibration.apply`` interpolates the coefficients in log k.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Calibration", "fit_calibration", "simulate"]


@dataclass(frozen=True)
class Calibration:
    """Per-k regression coefficients.

    Attributes:
        ks: float ``[m]`` the k grid (increasing).
        coef: float ``[m, 3]``: intercept, model, aipw.
        excess_var: float ``[m]``: residual variance beyond the pseudo-target's noise.
    """

    ks: np.ndarray
    coef: np.ndarray
    excess_var: np.ndarray

    def apply(self, k: int, model: float, aipw: float, target_noise: float) -> tuple[float, float]:
        """(calibrated accuracy, its variance) after k answers; ``target_noise`` is the
        Bernoulli variance of the unasked target's realised accuracy."""
        lk = np.log(np.clip(k, self.ks[0], self.ks[-1]))
        lg = np.log(self.ks)
        c = np.array([np.interp(lk, lg, self.coef[:, j]) for j in range(3)])
        v = float(np.interp(lk, lg, self.excess_var))
        acc = float(c[0] + c[1] * model + c[2] * aipw)
        return min(1.0, max(0.0, acc)), max(v, 0.0) + target_noise

    def to_json(self) -> dict[str, Any]:
        return {
            "ks": self.ks.tolist(),
            "coef": self.coef.tolist(),
            "excess_var": self.excess_var.tolist(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Calibration:
        return cls(np.asarray(d["ks"], float), np.asarray(d["coef"], float),
                   np.asarray(d["excess_var"], float))  # fmt: skip


def simulate(cases: list[Any], ks: tuple[int, ...], seeds: list[int]) -> list[dict[str, float]]:
    """Onboard every case (an object with the fields of ``training.experiments.onboard_core.Case``) with
    the neyman design; one record per (case, seed, k): k, model, aipw, truth, noise."""
    from irt_fast.onboard.probe import Probe

    out = []
    for i, c in enumerate(cases):
        truth = float(c.y_t.mean())
        noise = truth * (1 - truth) / len(c.y_t)
        for s in seeds:
            pr = Probe.from_params(c.alpha_pool, c.beta_pool, c.alpha_t, c.beta_t, c.prior,
                                   groups=c.groups_t, pool_groups=c.pool_groups,
                                   seed=s * 100_003 + i, n_draws=64)  # fmt: skip
            for k in ks:
                k = min(k, len(c.y_pool))
                idx = pr.next(k - pr.n_answers) if k > pr.n_answers else np.zeros(0, int)
                pr.record(idx, c.y_pool[idx])
                e = pr.estimates()
                out.append({"k": k, "model": e["model"].accuracy, "aipw": e["aipw"].accuracy,
                            "truth": truth, "noise": noise})  # fmt: skip
    return out


def fit_calibration(records: list[dict[str, float]]) -> Calibration:
    """Least squares per k of truth on (1, model, aipw) (see the module docstring)."""
    ks = sorted({int(r["k"]) for r in records})
    coef, excess = [], []
    for k in ks:
        sel = [r for r in records if int(r["k"]) == k]
        x = np.array([[1.0, r["model"], r["aipw"]] for r in sel])
        y = np.array([r["truth"] for r in sel])
        c, *_ = np.linalg.lstsq(x, y, rcond=None)
        resid = y - x @ c
        dof = max(len(y) - 3, 1)
        coef.append(c)
        excess.append(float(resid @ resid / dof - np.mean([r["noise"] for r in sel])))
    return Calibration(np.asarray(ks, float), np.asarray(coef), np.asarray(excess))
