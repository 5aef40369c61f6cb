"""``python -m recbole_lru.export --model_file saved/LRURec-....pth --out DIR``: write a serving
bundle (safetensors weights, JSON config, raw item tokens) from a RecBole checkpoint."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recbole_lru.export", description=__doc__)
    parser.add_argument("--model_file", required=True, help="a RecBole checkpoint of LRURec or causal LinRec")
    parser.add_argument("--out", required=True, help="the bundle folder to write")
    parser.add_argument("--data_path", default=None,
                        help="folder holding <dataset>/<dataset>.inter, if it moved since training "
                             "(the item tokens are read from the training data)")
    args = parser.parse_args(argv)
    from .serving.bundle import BundleError, export_bundle

    try:
        out = export_bundle(args.model_file, args.out, data_path=args.data_path)
    except (BundleError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
