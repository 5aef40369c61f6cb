"""Start-up code for the Ray worker processes of :mod:`recbole_lru.tune` (see sitecustomize.py)."""
