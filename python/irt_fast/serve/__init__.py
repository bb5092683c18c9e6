"""irt_fast serve: an OpenAI-compatible gateway that routes each chat completion to the LLM of a
pool most likely to answer it well (at the price you set), forwards it, and streams it back.

Needs the ``serve`` extra (``pip install 'irt_fast[serve]'``); ``irt-fast serve`` runs it.
The parts, one job each (the layout of vLLM's ``entrypoints/openai``):

- :mod:`.config`: ``router.toml`` checked key by key and against the model's LLM names;
- :mod:`.schemas`: the request bodies (pydantic) and the OpenAI-shaped errors;
- :mod:`.snapshot`: one served (model, config) pair, which hot reload swaps;
- :mod:`.routing`: the micro-batcher and the decision rules;
- :mod:`.route_api`: ``/v1/route`` and ``/v1/predict_accuracy``;
- :mod:`.chat`: ``/v1/chat/completions``: choose, forward, fall back;
- :mod:`.upstream`: calls to the upstream LLMs, streaming and fallback conditions;
- :mod:`.sse`: the upstream's server-sent events rewritten for the client;
- :mod:`.sessions`, :mod:`.spend`, :mod:`.metrics`: the small state kept between requests;
- :mod:`.gateway`: one worker's state; :mod:`.app`: the Starlette app and its lifespan;
- :mod:`.stub`: a local OpenAI-compatible upstream for tests, benchmarks and trying it out.
"""

from __future__ import annotations

from irt_fast.serve.app import create_app

__all__ = ["create_app"]
