"""One config per method: ``IrtNetConfig`` (the mixture of experts and its no-MoE ablation),
``MfConfig`` (EmbedLLM matrix factorisation) and ``JeIrtConfig`` (JE-IRT). Each writes exactly
the keys docs/format.md lists for its method, plus its training-only fields (readers ignore
unknown keys).

``IrtNetConfig(method="mf" | "jeirt")`` is still accepted from older callers and turned into the
method's own config by ``method_config`` (``build_model`` does it), so it never configures
another method's network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

METHODS = ("irtnet", "mf", "jeirt")


@dataclass(frozen=True)
class _Common:
    method: str = "irtnet"
    embed_dim: int = 768
    d: int = 232
    n_llms: int = 1
    llm_bias: bool = True

    def _check_common(self, method: str | tuple[str, ...]) -> None:
        allowed = (method,) if isinstance(method, str) else method
        if self.method not in allowed:
            raise ValueError(f"method must be one of {allowed}, got {self.method!r}")
        for name in ("embed_dim", "d", "n_llms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def to_json(self) -> dict[str, Any]:
        """The config as written to the weights file."""
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Any:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in known})

    def with_(self, **changes: Any) -> Any:
        return replace(self, **changes)


@dataclass(frozen=True)
class IrtNetConfig(_Common):
    """IrtNet sizes (docs/format.md's irtnet keys); ``n_routed = 0`` is the plain-MLP ablation."""

    hidden_dim: int = 512
    expert_dim: int = 256
    n_shared: int = 1
    n_routed: int = 39
    top_k: int = 0  # 0 means "all routed experts" (the dense reference)
    dropout: float = 0.5
    # Step size of the auxiliary-loss-free load-balancing bias (DeepSeek-V3). With top_k ==
    # n_routed every expert is selected for every query, the load is uniform and the bias
    # never moves: it only matters in sparse top-k mode.
    balance_rate: float = 1e-3

    def __post_init__(self) -> None:
        self._check_common(METHODS)  # "mf"/"jeirt": legacy, see the module docstring
        for name in ("hidden_dim", "expert_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_shared < 0 or self.n_routed < 0 or self.n_shared + self.n_routed == 0:
            raise ValueError("need at least one expert (n_shared + n_routed > 0)")
        if self.top_k == 0 and self.n_routed > 0:
            object.__setattr__(self, "top_k", self.n_routed)
        if self.n_routed > 0 and not 1 <= self.top_k <= self.n_routed:
            raise ValueError(f"top_k must be in 1..n_routed={self.n_routed}, got {self.top_k}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class MfConfig(_Common):
    """EmbedLLM matrix factorisation: only the shared sizes."""

    method: str = "mf"

    def __post_init__(self) -> None:
        self._check_common("mf")


@dataclass(frozen=True)
class JeIrtConfig(_Common):
    """JE-IRT: one hidden layer of ``hidden_dim`` (dropout in training only)."""

    method: str = "jeirt"
    hidden_dim: int = 512
    dropout: float = 0.5

    def __post_init__(self) -> None:
        self._check_common("jeirt")
        if self.hidden_dim <= 0:
            raise ValueError(f"hidden_dim must be positive, got {self.hidden_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


ModelConfig = IrtNetConfig | MfConfig | JeIrtConfig
CONFIGS: dict[str, type[_Common]] = {"irtnet": IrtNetConfig, "mf": MfConfig, "jeirt": JeIrtConfig}


def config_class(method: str) -> type[_Common]:
    if method not in CONFIGS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return CONFIGS[method]


def make_config(method: str, **sizes: Any) -> Any:
    """The config of ``method`` from ``sizes``; sizes the method does not have are dropped."""
    cls = config_class(method)
    known = {f.name for f in fields(cls)} - {"method"}
    return cls(method=method, **{k: v for k, v in sizes.items() if k in known})


def method_config(cfg: Any) -> Any:
    """``cfg`` as its method's own config (a legacy ``IrtNetConfig(method="mf")`` → MfConfig)."""
    if isinstance(cfg, IrtNetConfig) and cfg.method != "irtnet":
        sizes = asdict(cfg)
        return make_config(sizes.pop("method"), **sizes)
    return cfg


def config_from_json(obj: dict[str, Any]) -> Any:
    """The config a weights file's ``config`` object describes."""
    return config_class(str(obj.get("method", "irtnet"))).from_json(obj)
