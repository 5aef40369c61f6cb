"""Pure sequence ops: no nn.Module, no config.

``lru_scan`` and ``linear_attention`` are the public dispatchers; the subpackages
``scan`` and ``linattn`` hold one file per implementation.
"""
from .linattn import linear_attention
from .scan import lru_scan

__all__ = ["lru_scan", "linear_attention"]
