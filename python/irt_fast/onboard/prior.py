"""The population prior over one LLM's ability vector θ and offset b.

The trained LLMs' (θ, b) rows are a sample of the population a new LLM comes from. Their mean is
the prior mean. Their covariance cannot be the sample covariance: with n LLMs (29 on MMLU-Pro)
and p = d + 1 parameters (up to 233) it has rank n - 1 < p, so it is singular and a MAP fit
would be forbidden to move in most directions and over-confident in the rest.

Estimate used (``from_population``): each coordinate keeps its own sample variance (n - 1
degrees of freedom each, well determined even for small n; b and the θ entries have different
scales), and the correlation matrix is shrunk toward the identity with the Ledoit–Wolf (2004)
intensity, the closed-form choice that minimises the expected Frobenius error of the estimate
with no tuning. The result is positive definite for any n >= 2 (smallest eigenvalue >= the
shrinkage intensity times the smallest variance), keeps the directions in which the population
really varies (general ability, specialisations) and leaves the others a diagonal variance.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from irt_fast.errors import InputError

__all__ = ["Prior", "ledoit_wolf_correlation"]

# Variance floor relative to the mean variance: a coordinate constant across the population
# (e.g. b of a model trained without offsets) would otherwise give a singular prior.
_VAR_FLOOR = 1e-6


@dataclass(frozen=True, eq=False)
class Prior:
    """Gaussian prior N(mean, cov) over (θ, b) (θ first, then b when the model has offsets).

    Attributes:
        mean: float64 ``[p]``.
        cov: float64 ``[p, p]``, symmetric positive definite.
    """

    mean: np.ndarray
    cov: np.ndarray

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float64)
        cov = np.asarray(self.cov, dtype=np.float64)
        if mean.ndim != 1 or mean.size == 0:
            raise InputError(f"prior mean must be a non-empty 1-D array, got shape {mean.shape}")
        p = mean.size
        if cov.shape != (p, p):
            raise InputError(f"prior cov must be [{p}, {p}], got shape {cov.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
            raise InputError("prior mean/cov hold NaN or Inf")
        cov = 0.5 * (cov + cov.T)  # float32 round trips leave tiny asymmetries
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "cov", cov)
        try:
            np.linalg.cholesky(cov)
        except np.linalg.LinAlgError as exc:
            raise InputError("prior cov is not positive definite") from exc

    @property
    def dim(self) -> int:
        return int(self.mean.size)

    @cached_property
    def precision(self) -> np.ndarray:
        """cov⁻¹ (cached: every fit under this prior needs it)."""
        prec = np.linalg.inv(self.cov)
        return 0.5 * (prec + prec.T)

    @classmethod
    def from_population(cls, theta: np.ndarray, bias: np.ndarray | None = None) -> Prior:
        """Shrinkage estimate from the trained LLMs' rows: ``theta`` ``[n, d]``, ``bias``
        ``[n]`` or None (no offsets: p = d). Works for any n >= 2, including n < p."""
        x = np.asarray(theta, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] == 0:
            raise InputError(f"theta must be [n_llms, d], got shape {x.shape}")
        if bias is not None:
            b = np.asarray(bias, dtype=np.float64)
            if b.shape != (x.shape[0],):
                raise InputError(f"bias must be [{x.shape[0]}], got shape {b.shape}")
            x = np.concatenate([x, b[:, None]], axis=1)
        n = x.shape[0]
        if n < 2:
            raise InputError(f"a population prior needs at least 2 LLMs, got {n}")
        if not np.isfinite(x).all():
            raise InputError("theta/bias hold NaN or Inf")
        mean = x.mean(axis=0)
        xc = x - mean
        var = (xc**2).sum(axis=0) / (n - 1)
        var = np.maximum(var, _VAR_FLOOR * max(float(var.mean()), 1e-12))
        sd = np.sqrt(var)
        corr = ledoit_wolf_correlation(xc / sd)
        return cls(mean=mean, cov=corr * np.outer(sd, sd))


def ledoit_wolf_correlation(z: np.ndarray) -> np.ndarray:
    """Ledoit–Wolf shrinkage of the covariance of centred, unit-variance columns ``z`` ``[n, p]``
    toward the identity (the scaled-identity target of Ledoit & Wolf 2004, whose scale is 1
    here); the diagonal is reset to exactly 1."""
    n, p = z.shape
    s = z.T @ z / n
    mu = np.trace(s) / p
    # Squared distances in the normalised Frobenius norm ‖A‖² = tr(A Aᵀ)/p of the paper.
    d2 = float(((s - mu * np.eye(p)) ** 2).sum()) / p
    # b̄² = (1/n²) Σ_k ‖z_k z_kᵀ − S‖², with ‖z zᵀ − S‖² = ‖z‖⁴ − 2 zᵀ S z + ‖S‖².
    sq = (z**2).sum(axis=1)
    zsz = np.einsum("ki,ij,kj->k", z, s, z)
    b2bar = float((sq**2 - 2 * zsz + (s**2).sum()).sum()) / (n**2 * p)
    shrink = 1.0 if d2 <= 0 else min(1.0, max(b2bar, 0.0) / d2)
    out = shrink * mu * np.eye(p) + (1 - shrink) * s
    dg = np.sqrt(np.diag(out))
    out = out / np.outer(dg, dg)
    np.fill_diagonal(out, 1.0)
    return out
