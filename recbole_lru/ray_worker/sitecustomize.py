"""Imported by Python at start-up in each Ray worker of a ``--tool ray`` search (``recbole_lru.tune``
puts this folder first on the workers' PYTHONPATH).

A Ray Tune trial runs in an actor whose class Ray 2.6 imports from ``ray.tune``, and importing
``ray.tune`` reads ``np.bool8``, which numpy 2 removed; the worker fails before any trial code runs.
The driver has the alias from ``recbole_lru.compat``; this gives it to the workers, and nothing else.
(It takes the place of any other ``sitecustomize`` module in the workers only.)
"""
import numpy as _np

if "bool8" not in _np.__dict__:
    _np.bool8 = _np.bool_
