"""Model entries: the rows of a comparison, parsed from ``--models`` and ``--model_config``.

An entry is ``MODEL[:regime][@label]``: ``LRURec``, ``LRURec:prefix``, ``SASRec:whole_sequence``
(the plugin's ``SASRecWS``), ``LRURec@dropout0.6`` (a separately named row of the same model).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["DEFAULT_MODELS", "REGIMES", "ModelEntry", "parse_models", "apply_model_configs", "safe_name",
           "parse_value"]

DEFAULT_MODELS = ["LRURec", "LinRec", "SASRec", "BERT4Rec", "GRU4Rec", "NARM", "FPMC", "Caser", "BPR"]
REGIMES = ("prefix", "whole_sequence")


def parse_value(text: str):
    """A command-line value read as RecBole reads its command line (a Python literal where it
    parses, else the string)."""
    from ..quick_start import parse_overrides

    return parse_overrides([f"--v={text}"])["v"]


@dataclass
class ModelEntry:
    """One row of the comparison: the display name, the RecBole model and its own overrides."""

    name: str
    model: str
    regime: str | None = None
    overrides: dict = field(default_factory=dict)
    error: str | None = None  # a problem found before running (e.g. no such regime)


def safe_name(name: str) -> str:
    """A file-name form of a model entry (``LRURec:prefix`` -> ``LRURec_prefix``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def parse_models(text) -> list[ModelEntry]:
    """``"LRURec,SASRec:whole_sequence"`` (or a list) -> entries, in order, without duplicates.

    ``MODEL[:regime]@label`` adds a separately named row of the same model (``LRURec@dropout0.6``),
    to be given its own settings with ``--model_config LRURec@dropout0.6:hidden_dropout_prob=0.6``.
    """
    from .. import registry

    items = text.split(",") if isinstance(text, str) else list(text)
    entries, seen = [], set()
    for raw in items:
        raw = raw.strip()
        if not raw:
            continue
        spec, at, label = raw.partition("@")
        if at and not label.strip():
            raise ValueError(f"model entry {raw!r}: nothing after '@' (expected MODEL@label)")
        model, _, regime = spec.partition(":")
        model, regime = model.strip(), regime.strip() or None
        if regime is not None and regime not in REGIMES:
            raise ValueError(f"model entry {raw!r}: regime must be one of {', '.join(REGIMES)}")
        name = (model if regime is None else f"{model}:{regime}") + (f"@{label.strip()}" if at else "")
        if name in seen:
            continue
        seen.add(name)
        entry = ModelEntry(name=name, model=model, regime=regime)
        if regime is not None:
            if model == "SASRec" and regime == "whole_sequence":
                entry.model = "SASRecWS"
                entry.overrides["train_mode"] = "whole_sequence"
            elif model in registry.MODELS:
                entry.overrides["train_mode"] = regime
                if model == "LinRec" and regime == "whole_sequence":
                    # every-position training needs the causal form of LinRec's attention, and one
                    # row per user window needs the paper's batch of 128 rows (RecBole's default
                    # 2048 would leave about one update per epoch on small sets)
                    entry.overrides["causal"] = True
                    entry.overrides.setdefault("train_batch_size", 128)
            elif regime == "whole_sequence":
                entry.error = (f"{model} has no whole_sequence training regime (only the plugin's "
                               f"{', '.join(registry.MODELS)} and SASRec:whole_sequence have one)")
        entries.append(entry)
    if not entries:
        raise ValueError("no models given")
    return entries


def apply_model_configs(entries: list[ModelEntry], items) -> None:
    """Apply ``MODEL:key=value`` strings. ``MODEL`` is an entry's display name (``LRURec:prefix``)
    or a model name, which reaches every entry of that model."""
    for item in items or []:
        head, eq, value = item.partition("=")
        target, colon, key = head.rpartition(":")
        if not eq or not colon or not target or not key:
            raise ValueError(f"--model_config {item!r}: expected MODEL:key=value")
        key = key.lstrip("-")
        hits = [e for e in entries if e.name == target]
        if not hits:
            hits = [e for e in entries if target in (e.model, e.name.partition("@")[0].partition(":")[0])]
        if not hits:
            raise ValueError(f"--model_config {item!r}: {target!r} is not among the models "
                             f"({', '.join(e.name for e in entries)})")
        for e in hits:
            e.overrides[key] = parse_value(value)
