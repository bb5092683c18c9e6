"""The model-size presets, in one place (the CLI, the evaluation suite and the experiments all
take their sizes from here).

- ``paper``: the paper's IrtNet (d = 232, 1 shared + 39 routed experts of 512 → 256, dropout 0.5).
- ``small``: for small data and quick runs (d = 8, 1 + 3 experts of 64 → 32, dropout 0.1):
  ``training.fit --demo``, ``training.evaluate --quick`` and the experiments below 5,000 queries.
- ``reduced``: the experiments' configuration on real data (d = 64, 1 + 7 experts of
  256 → 128, dropout 0.5).
"""

from __future__ import annotations

from typing import Any

from training.configs import ModelConfig, make_config
from training.model import mlp_config_matching

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"d": 232, "hidden_dim": 512, "expert_dim": 256, "n_shared": 1, "n_routed": 39,
              "dropout": 0.5},
    "small": {"d": 8, "hidden_dim": 64, "expert_dim": 32, "n_shared": 1, "n_routed": 3,
              "dropout": 0.1},
    "reduced": {"d": 64, "hidden_dim": 256, "expert_dim": 128, "n_shared": 1, "n_routed": 7,
                "dropout": 0.5},
}  # fmt: skip

# Training methods: the three item networks plus "mlp", the no-MoE ablation of IrtNet.
TRAIN_METHODS = ("irtnet", "mlp", "mf", "jeirt")


def model_config(
    method: str, preset: str, *, embed_dim: int, n_llms: int, **overrides: Any
) -> ModelConfig:
    """The config of ``method`` at ``preset`` sizes (only the sizes that method has);
    ``overrides`` that are None keep the preset's value. ``method="mlp"`` gives the no-MoE
    ablation matching the IrtNet's size."""
    if method not in TRAIN_METHODS:
        raise ValueError(f"method must be one of {TRAIN_METHODS}, got {method!r}")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    sizes = dict(PRESETS[preset])
    sizes.update({k: v for k, v in overrides.items() if v is not None})
    cfg = make_config(
        "irtnet" if method == "mlp" else method, embed_dim=embed_dim, n_llms=n_llms, **sizes
    )
    return mlp_config_matching(cfg) if method == "mlp" else cfg
