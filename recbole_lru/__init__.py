"""recbole-lru: LRURec and LinRec as first-class RecBole models.

``import recbole_lru`` applies the compatibility shims for current numpy/torch and registers the
models with RecBole, so ``model='LRURec'`` / ``model='LinRec'`` work wherever RecBole takes a
model name (``run_recbole``, ``Config``, ``objective_function``, ``HyperTuning``, ...).
"""
from .registry import register as _register

_register()

from .models.linrec import LinRec  # noqa: E402
from .models.lrurec import LRURec  # noqa: E402
from .models.sasrec_ws import SASRecWS  # noqa: E402

__version__ = "0.1.0"
__all__ = ["LRURec", "LinRec", "SASRecWS", "__version__"]
