"""The plugin's sequential recommenders, one RecBole ``SequentialRecommender`` per file:
``lrurec.py`` (LRURec), ``linrec.py`` (LinRec), ``sasrec_ws.py`` (SASRec trained on whole sequences).
``_common.py`` holds what they share (the loss of both training regimes, item-id checks, parameter
groups)."""
from .linrec import LinRec
from .lrurec import LRURec
from .sasrec_ws import SASRecWS

__all__ = ["LRURec", "LinRec", "SASRecWS"]
