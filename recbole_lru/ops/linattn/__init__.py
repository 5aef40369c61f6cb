"""LinRec linear attention (ELU + L2-normalised q and k, K^T V first).

Files: ``reference.py`` (materialised O(N^2) form, the spec), ``chunked.py`` (PyTorch, O(N K V),
causal form chunk-wise, incremental step), ``triton.py`` (fused kernels), ``feature_map.py``
(the feature map every backend shares) and ``dispatch.py`` (backend choice).
"""
from .chunked import linear_attention_step
from .dispatch import linear_attention
from .feature_map import DEFAULT_EPS, linrec_feature_map
from .reference import linear_attention_ref

__all__ = [
    "linear_attention",
    "linear_attention_step",
    "linrec_feature_map",
    "linear_attention_ref",
    "DEFAULT_EPS",
]
