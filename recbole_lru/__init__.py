"""recbole-lru: LRURec and LinRec as first-class RecBole models.

``import recbole_lru`` registers the models with RecBole (:func:`register`, the changes listed in
:mod:`recbole_lru.patches`), so ``model='LRURec'`` / ``model='LinRec'`` work wherever RecBole takes
a model name (``run_recbole``, ``Config``, ``objective_function``, ``HyperTuning``, ...).
:func:`unregister` gives RecBole back exactly as it was.
"""
from .registry import register, unregister

register()

from .models.linrec import LinRec  # noqa: E402
from .models.lrurec import LRURec  # noqa: E402
from .models.sasrec_ws import SASRecWS  # noqa: E402

__version__ = "0.1.0"
__all__ = ["LRURec", "LinRec", "SASRecWS", "register", "unregister", "__version__"]
