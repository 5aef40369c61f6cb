"""nn.Modules holding parameters, built on ``recbole_lru.ops``."""
from .linear_attention import LinRecMultiHeadAttention, use_linrec_attention

__all__ = ["LinRecMultiHeadAttention", "use_linrec_attention"]
