"""Side-by-side comparison of LRURec, LinRec and RecBole's models on one dataset.

    python benchmarks/compare.py --dataset amazon-video-games --data_path ../shared/datasets \
        --models LRURec,SASRecWS --mask_history --optimizer adamw --epochs 200 --out results

The same command as ``python -m recbole_lru.compare`` (see its ``--help``), runnable from a checkout
that is not installed.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole_lru.compare import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
