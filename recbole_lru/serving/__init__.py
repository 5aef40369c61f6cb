"""Streaming serving for models with an O(1) ``step`` (LRURec, causal LinRec).

* :mod:`.bundle`: export a trained checkpoint to safetensors + JSON; load it without pickle.
* :class:`Recommender`: ``observe`` / ``recommend`` and their batch forms over a state store.
* :mod:`.stores`: SQLite (embedded, durable) and Redis (shared by several processes).
* :func:`create_app` (in :mod:`.app`, needs FastAPI): the HTTP service, micro-batched by :mod:`.batcher`.
* The request path: :mod:`.fast_step` (LRURec's step with its constants computed at load),
  :mod:`.scoring` (catalogue scoring and top-k, shared with the recompute baseline of
  :mod:`.recompute`), :mod:`.codec` (a user's state as validated raw bytes), :mod:`.core` (what
  every served model shares).
"""
from .bundle import Bundle, BundleError, export_bundle, load_bundle, save_bundle
from .codec import StateFormatError
from .core import ConflictError, Recommendation, UnknownItemError
from .recommender import Recommender
from .stores import SQLiteStore, StateStore, StoreError, open_store

__all__ = [
    "Bundle", "BundleError", "export_bundle", "load_bundle", "save_bundle",
    "Recommender", "Recommendation", "UnknownItemError", "ConflictError",
    "StateStore", "SQLiteStore", "StoreError", "StateFormatError", "open_store", "create_app",
]


def __getattr__(name):
    if name == "create_app":  # FastAPI is only needed for the HTTP service
        from .app import create_app

        return create_app
    raise AttributeError(name)
