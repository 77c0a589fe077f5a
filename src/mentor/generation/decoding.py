"""Which decoding an evaluation uses: the model's recommended sampling (its own
``generation_config.json``, as the paper evaluates every model), greedy on request, or explicit
settings.

``resolve_sampling(model, temperature=None)`` reads the model's ``generation_config.json`` (a
local directory, or a Hub id's file from the Hugging Face cache, fetched when online). A config with
``do_sample: true`` gives its ``temperature`` / ``top_p`` / ``top_k`` (a key it does not set is
not applied: temperature 1, top-p 1, no top-k); a config without ``do_sample: true``, or no
config at all, recommends greedy decoding, which is what transformers' ``generate`` would do
with it. ``temperature=0`` (``--greedy``) is greedy; any other explicit ``temperature`` /
``top_p`` / ``top_k`` overrides the recommendation. The returned ``decoding`` dict says which
(it goes into every result's ``settings``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mentor.generation.loop import Sampling
from mentor.models import resolve_model

#: the generation-config keys a recommendation is read from
SAMPLING_KEYS = ("do_sample", "temperature", "top_p", "top_k")


def generation_config_file(model: str | os.PathLike | None) -> Path | None:
    """The model's ``generation_config.json``: in its directory, or for a Hub id from the Hugging
    Face cache (fetched when online); ``None`` when the model has none."""
    from transformers.utils import cached_file

    name = resolve_model(model)
    if Path(name).is_dir():
        f = Path(name) / "generation_config.json"
        return f if f.is_file() else None
    try:
        found = cached_file(name, "generation_config.json", _raise_exceptions_for_missing_entries=False,
                            _raise_exceptions_for_connection_errors=False)
    except OSError:  # not a Hub model (e.g. a name a server gives a model): no recommendation
        return None
    return Path(found) if found else None


def model_source(generator: Any, model: str | os.PathLike | None) -> str | os.PathLike | None:
    """What a generator generates with, for its generation config: the loaded directory of a
    transformers model (``HFGenerator``), the served model name of an OpenAI-compatible endpoint,
    else ``model``."""
    loaded = getattr(getattr(generator, "model", None), "name_or_path", None)
    served = getattr(getattr(generator, "config", None), "model", None)
    return loaded or (served if isinstance(served, str) else None) or model


def recommended(model: str | os.PathLike | None) -> tuple[dict[str, Any], str | None]:
    """``(settings, file)``: the sampling keys the model's generation config sets (``{}`` when it
    has none or the file is missing) and the file they came from."""
    f = generation_config_file(model)
    if f is None:
        return {}, None
    try:
        cfg = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read the generation config {f}: {e}") from None
    return {k: cfg[k] for k in SAMPLING_KEYS if cfg.get(k) is not None}, str(f)


def resolve_sampling(
    model: str | os.PathLike | None,
    *,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    max_new_tokens: int = 512,
    seed: int | None = None,
) -> tuple[Sampling, dict[str, Any]]:
    """The ``Sampling`` for an evaluation of ``model`` and the ``decoding`` record: ``mode``
    (``recommended`` | ``greedy`` | ``explicit``), the ``generation_config`` file read (if any),
    and the resolved ``temperature`` / ``top_p`` / ``top_k``. ``temperature=None`` (and no other
    explicit setting) means the model's recommendation; ``temperature=0`` means greedy."""
    if temperature is not None and temperature <= 0:
        mode, source, temp, p, k = "greedy", None, 0.0, 1.0, None
    elif temperature is None and top_p is None and top_k is None:
        rec, source = recommended(model)
        mode = "recommended"
        if rec.get("do_sample"):
            temp, p, k = float(rec.get("temperature", 1.0)), float(rec.get("top_p", 1.0)), rec.get("top_k")
        else:  # no sampling recommended: greedy, as transformers' generate would decode
            temp, p, k = 0.0, 1.0, None
    else:
        mode, source = "explicit", None
        temp, p, k = float(1.0 if temperature is None else temperature), float(1.0 if top_p is None else top_p), top_k
    k = int(k) if k else None  # top_k 0 or absent: no top-k cut
    sampling = Sampling(temperature=temp, top_p=p, top_k=None if temp <= 0 else k,
                        max_new_tokens=max_new_tokens, seed=seed)
    decoding = {"mode": mode, "greedy": sampling.greedy, "temperature": sampling.temperature,
                "top_p": sampling.top_p, "top_k": sampling.top_k, "generation_config": source}
    return sampling, decoding


def describe(sampling: Sampling) -> dict[str, Any]:
    """The ``decoding`` record of a ``Sampling`` given directly (``evaluate(sampling=...)``)."""
    return {"mode": "greedy" if sampling.greedy else "explicit", "greedy": sampling.greedy,
            "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": sampling.top_k,
            "generation_config": None}
