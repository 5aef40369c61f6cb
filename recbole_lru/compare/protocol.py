"""What makes two comparison rows comparable: the metrics every row reports and the protocol's key.

Shared by the summary (which rows are done) and the report (which rows a table may set side by
side), which import it and not each other."""
from __future__ import annotations

__all__ = ["METRIC_KEYS", "protocol_key"]

METRIC_KEYS = ["recall@10", "ndcg@10", "recall@20", "ndcg@20", "mrr@10", "mrr@20"]
# keys of the protocol that describe where things are, not how models are compared
_PROTOCOL_LOCATION_KEYS = ("data_source",)


def protocol_key(protocol: dict) -> dict:
    """The part of a protocol that decides whether two rows are comparable. Keys set to None are
    left out, so a key added to the protocol later (None by default) keeps older rows current."""
    return {k: v for k, v in (protocol or {}).items() if k not in _PROTOCOL_LOCATION_KEYS and v is not None}
