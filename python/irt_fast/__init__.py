"""irt_fast: item response theory for routing queries to LLMs and predicting benchmark scores.

    m = irt_fast.load("runs/demo/model.safetensors")
    choice = irt_fast.route(x, model=m)            # best LLM per query (+ its probability)
    acc = irt_fast.predict_accuracy(x, model=m)    # {llm: predicted accuracy}
    m2 = m.add_llm("my-llm", x_answered, correct)  # a new LLM from its 0/1 answers, no retraining
    m2.save("pool.safetensors")                    # format v2, written atomically

The same from the shell: ``python -m irt_fast add-llm --model M --answers FILE --out M2``.

Inference runs in the Rust extension (``irt_fast._core``), which is imported on first use, so
the data modules (``irt_fast.data``, ``irt_fast.embed``, ``irt_fast.synthetic``) import without
it. Nothing here imports torch.
"""

from __future__ import annotations

from irt_fast import errors
from irt_fast.engine import Model, Routed, load, predict_accuracy, route
from irt_fast.errors import (
    DataError,
    EmbedderError,
    InputError,
    IrtFastError,
    UnknownLLMError,
    WeightsFormatError,
)

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "EmbedderError",
    "InputError",
    "IrtFastError",
    "Model",
    "Routed",
    "UnknownLLMError",
    "WeightsFormatError",
    "errors",
    "load",
    "predict_accuracy",
    "route",
]
