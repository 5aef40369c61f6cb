"""Pure sequence ops: no nn.Module, no config.

One folder per op, laid out alike: a file per implementation exporting the function named after
it (``<op>_<file>``: ``lru_scan_parallel`` in ``scan/parallel.py``), and the op's dispatcher in the
folder's ``__init__.py``, choosing the implementation by ``backend=`` or, for ``"auto"``, by device
and shape, or by the op's environment variable.

* ``scan/``: :func:`lru_scan`, the LRU recurrence ``h_t = lam h_{t-1} + mask_t x_t``
  (``RECBOLE_LRU_SCAN_BACKEND``).
* ``linattn/``: :func:`linear_attention`, LinRec attention, and ``linear_attention_step``
  (``RECBOLE_LRU_ATTENTION_BACKEND``).
* ``linear_ce/``: catalogue scoring fused with cross-entropy (``linear_cross_entropy``).

``utils.py`` holds what every op shares: ``compute_dtype`` and the environment lookup (with the
older shared variable ``RECBOLE_LRU_BACKEND`` as a fallback).
"""
from .linattn import linear_attention
from .linear_ce import linear_cross_entropy
from .scan import lru_scan

__all__ = ["lru_scan", "linear_attention", "linear_cross_entropy"]
