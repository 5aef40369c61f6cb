"""Model bundles: what serving needs from a trained model, in files that load without pickle.

A bundle is a folder holding

* ``weights.safetensors``: the model's ``state_dict`` (safetensors: tensors only, no code);
* ``config.json``: the model name, the catalogue size, the JSON-representable part of the RecBole
  config the model was trained with, and the SHA-256 of the weights file;
* ``items.json``: the raw item tokens, position = internal id (position 0 is RecBole's ``[PAD]``);
* ``popularity.json``: training interactions per item id, the empty-history fallback of models
  that have no learned empty-history output (LinRec).

Loading a bundle reads only these files: neither the training data nor a RecBole ``Dataset``
nor ``torch.load`` is involved. The model is rebuilt from its config and the catalogue size
through :class:`_Catalogue`, the one thing RecBole's model constructors read from a dataset.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["Bundle", "BundleError", "SERVABLE_MODELS", "save_bundle", "export_bundle", "load_bundle"]

FORMAT_VERSION = 1
SERVABLE_MODELS = ("LRURec", "LinRec")
_FILES = ("weights.safetensors", "config.json", "items.json", "popularity.json")


class BundleError(ValueError):
    """A model that cannot be served, or a bundle folder that is incomplete or inconsistent."""


class _ServingConfig(dict):
    """The saved config, answering None for missing keys as RecBole's ``Config`` does."""

    def __getitem__(self, key):
        return self.get(key)


class _Catalogue:
    """What ``SequentialRecommender.__init__`` reads from a dataset: the number of item ids."""

    def __init__(self, item_field: str, n_items: int):
        self.item_field, self.n_items = item_field, n_items

    def num(self, field_name: str) -> int:
        if field_name != self.item_field:
            raise BundleError(f"the model asked for the size of field {field_name!r}; a bundle only "
                              f"knows the item field {self.item_field!r}")
        return self.n_items


@dataclass
class Bundle:
    """A loaded bundle: the model in eval mode on CPU and its catalogue."""

    path: str
    model_name: str
    model: torch.nn.Module
    tokens: list[str]
    popularity: list[int]
    config: dict
    fingerprint: str
    token2id: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        if not self.token2id:
            self.token2id = {t: i for i, t in enumerate(self.tokens) if i > 0}

    @property
    def n_items(self) -> int:
        return len(self.tokens)


def _json_config(config) -> dict:
    """Every key of a RecBole config whose value survives a JSON round trip unchanged."""
    raw = config.final_config_dict if hasattr(config, "final_config_dict") else dict(config)
    out = {}
    for key, value in raw.items():
        try:
            if json.loads(json.dumps(value)) == value:
                out[key] = value
        except (TypeError, ValueError):
            continue  # enums, torch.device, classes: rebuilt or irrelevant when serving
    return out


def check_servable(model_name: str, config) -> None:
    """One clear error for models without an O(1) ``step``."""
    if model_name not in SERVABLE_MODELS:
        raise BundleError(
            f"{model_name} cannot be served: streaming serving needs a model with an O(1) step() "
            f"(LRURec, or LinRec with causal: True); {model_name} re-encodes the whole history per request."
        )
    if model_name == "LinRec" and not config["causal"]:
        raise BundleError("LinRec cannot be served with causal: False: its attention lets earlier "
                          "positions see later items, so it has no step(); train it with causal: True.")


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_bundle(model_name: str, config, state_dict: dict, tokens, popularity, out_dir) -> str:
    """Write a bundle folder from a model's config, weights and catalogue; returns the folder."""
    from safetensors.torch import save_file

    check_servable(model_name, config)
    tokens = [str(t) for t in tokens]
    if len(tokens) < 2 or len(set(tokens)) != len(tokens):
        raise BundleError(f"the item-token list must hold [PAD] and at least one item, all distinct "
                          f"(got {len(tokens)} tokens, {len(set(tokens))} distinct)")
    popularity = [int(c) for c in popularity]
    if len(popularity) != len(tokens):
        raise BundleError(f"popularity has {len(popularity)} entries for {len(tokens)} item ids")
    cfg = _json_config(config)
    cfg["model"] = model_name
    os.makedirs(out_dir, exist_ok=True)
    weights = os.path.join(out_dir, "weights.safetensors")
    # safetensors refuses tensors sharing storage; detached contiguous copies on CPU are plain
    save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}, weights)
    meta = {
        "format_version": FORMAT_VERSION,
        "model": model_name,
        "n_items": len(tokens),
        "item_field": cfg.get("ITEM_ID_FIELD", "item_id"),
        "weights_sha256": _sha256(weights),
        "config": cfg,
    }
    for name, obj in (("config.json", meta), ("items.json", tokens), ("popularity.json", popularity)):
        tmp = os.path.join(out_dir, name + ".tmp")
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=1 if name == "config.json" else None)
        os.replace(tmp, os.path.join(out_dir, name))
    return str(out_dir)


def export_bundle(model_file, out_dir, dataset=None, data_path: str | None = None) -> str:
    """Turn a RecBole checkpoint of LRURec / causal LinRec into a bundle.

    The checkpoint is read with :func:`recbole_lru.compat.load_checkpoint` (no arbitrary code).
    RecBole checkpoints hold no item tokens, so the dataset is rebuilt from the checkpoint's config
    (``data_path`` overrides where it lives), unless a built ``dataset`` is passed.
    """
    from .. import compat, registry

    registry.register()
    checkpoint = compat.load_checkpoint(model_file, map_location="cpu")
    config = checkpoint["config"]
    model_name = config["model"]
    check_servable(model_name, config)
    if dataset is None:
        from recbole.data import create_dataset

        if data_path is not None:
            config["data_path"] = os.path.join(data_path, config["dataset"])
        dataset = create_dataset(config)
    item_field = config["ITEM_ID_FIELD"]
    tokens = list(dataset.field2id_token[item_field])
    n_items = checkpoint["state_dict"]["item_embedding.weight"].shape[0]
    if n_items != len(tokens):
        raise BundleError(f"the checkpoint scores {n_items} item ids but dataset {config['dataset']!r} "
                          f"maps {len(tokens)}: it is not the data this model was trained on")
    # inter_feat is a DataFrame until RecBole's data_preparation turns it into tensors
    ids = torch.as_tensor(np.asarray(dataset.inter_feat[item_field]), dtype=torch.long)
    counts = torch.bincount(ids, minlength=len(tokens))
    return save_bundle(model_name, config, checkpoint["state_dict"], tokens, counts.tolist(), out_dir)


def build_model(model, config: dict, n_items: int) -> torch.nn.Module:
    """Construct a model (a plugin model's name, or any RecBole model class) from a saved config
    and the catalogue size, without a dataset."""
    from .. import registry

    registry.register()
    if isinstance(model, str):
        if model not in registry.MODELS:
            raise BundleError(f"unknown model {model!r}; bundles hold one of {list(SERVABLE_MODELS)}")
        model = getattr(importlib.import_module(registry.MODELS[model]), model)
    cfg = _ServingConfig(config)
    cfg["device"] = torch.device("cpu")
    return model(cfg, _Catalogue(cfg["ITEM_ID_FIELD"], n_items))


def load_bundle(path, dtype: torch.dtype = torch.float32) -> Bundle:
    """Load a bundle folder: the model in eval mode (``dtype``: float32, or float64 for exact checks)."""
    from safetensors.torch import load_file

    path = os.fspath(path)
    missing = [f for f in _FILES if not os.path.isfile(os.path.join(path, f))]
    if missing:
        raise BundleError(f"{path} is not a complete bundle: missing {', '.join(missing)} "
                          f"(write one with python -m recbole_lru.export)")
    with open(os.path.join(path, "config.json")) as fh:
        meta = json.load(fh)
    if meta.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format {meta.get('format_version')!r}, this version reads {FORMAT_VERSION}")
    weights = os.path.join(path, "weights.safetensors")
    if _sha256(weights) != meta["weights_sha256"]:
        raise BundleError(f"{weights} does not match the checksum in config.json (modified or truncated)")
    with open(os.path.join(path, "items.json")) as fh:
        tokens = json.load(fh)
    with open(os.path.join(path, "popularity.json")) as fh:
        popularity = json.load(fh)
    if len(tokens) != meta["n_items"] or len(popularity) != meta["n_items"]:
        raise BundleError(f"{path}: items.json/popularity.json do not hold n_items={meta['n_items']} entries")
    check_servable(meta["model"], _ServingConfig(meta["config"]))
    model = build_model(meta["model"], meta["config"], meta["n_items"])
    model.load_state_dict(load_file(weights), strict=True)
    model = model.to(dtype).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return Bundle(path=path, model_name=meta["model"], model=model, tokens=tokens, popularity=popularity,
                  config=meta["config"], fingerprint=meta["weights_sha256"])
