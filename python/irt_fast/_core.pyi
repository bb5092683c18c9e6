"""Type stubs of the compiled engine (rust/src/py). Use ``irt_fast``, not this module."""

from os import PathLike
from typing import final

import numpy as np
import numpy.typing as npt

__all__ = ["Engine", "FORMAT_VERSION", "MAX_CHUNK_ROWS"]

FORMAT_VERSION: str
MAX_CHUNK_ROWS: int

@final
class Engine:
    """A model loaded from a weights file, held in Rust."""

    @staticmethod
    def load(
        path: str | PathLike[str], threads: int | None = None, dtype: str | None = None
    ) -> Engine: ...
    @property
    def dtype(self) -> str: ...
    @property
    def weight_bytes(self) -> int: ...
    @property
    def kernel(self) -> str: ...
    @property
    def flushed_subnormals(self) -> int: ...
    def with_llms(
        self,
        names: list[str],
        theta: npt.NDArray[np.float32],
        bias: npt.NDArray[np.float32],
        llm_info_json: str,
        answers: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]
        | None = None,
    ) -> Engine: ...
    @property
    def llm_names(self) -> list[str]: ...
    @property
    def theta(self) -> npt.NDArray[np.float32]: ...
    @property
    def llm_bias(self) -> npt.NDArray[np.float32]: ...
    @property
    def prior(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None: ...
    @property
    def llm_info_json(self) -> str | None: ...
    @property
    def answers(
        self,
    ) -> (
        tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]] | None
    ): ...
    @property
    def embed_dim(self) -> int: ...
    @property
    def d(self) -> int: ...
    @property
    def method(self) -> str: ...
    @property
    def config_json(self) -> str: ...
    @property
    def training_json(self) -> str | None: ...
    @property
    def embedder(self) -> tuple[str, int, bool]: ...
    @property
    def threads(self) -> int: ...
    @property
    def n_weights(self) -> int: ...
    @property
    def macs_per_query(self) -> int: ...
    def predict_proba(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...
    def item_params(
        self, x: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
    def route(
        self,
        x: npt.NDArray[np.float32],
        candidates: list[int],
        cost: list[float] | None = None,
        rule: str = "best",
        param: float = 0.0,
    ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.float32]]: ...
    def predict_accuracy_sums(
        self,
        x: npt.NDArray[np.float32],
        groups: npt.NDArray[np.uint32] | None = None,
        n_groups: int = 1,
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint64]]: ...
