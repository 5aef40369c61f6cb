"""nn.Modules holding parameters, built on ``recbole_lru.ops``: the LRU layer and block (``lru.py``)
and LinRec's drop-in attention for RecBole's transformers (``linear_attention.py``)."""
from .linear_attention import LinRecMultiHeadAttention, use_linrec_attention
from .lru import LRUBlock, LRULayer, PointWiseFeedForward

__all__ = ["LRULayer", "LRUBlock", "PointWiseFeedForward", "LinRecMultiHeadAttention", "use_linrec_attention"]
