"""``python -m recbole_lru.serve --bundle DIR [--store sqlite:PATH | redis://HOST:PORT/DB] --port 8000``:
the HTTP service (FastAPI + uvicorn) over a bundle written by ``python -m recbole_lru.export``."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recbole_lru.serve", description=__doc__)
    parser.add_argument("--bundle", required=True, help="bundle folder")
    parser.add_argument("--store", default="sqlite:states.sqlite",
                        help="sqlite:PATH[?group_commit_ms=MS&synchronous=full|normal] or redis://HOST:PORT/DB")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads per request")
    parser.add_argument("--batch_window_ms", type=float, default=0.0,
                        help="micro-batching: how long an idle server waits for more requests to serve them "
                             "in one batched call (0: none; requests arriving during a batch join the next)")
    parser.add_argument("--no_batching", action="store_true", help="serve every request on its own")
    parser.add_argument("--log_level", default="warning")
    args = parser.parse_args(argv)
    if args.batch_window_ms < 0:
        parser.error(f"--batch_window_ms must be >= 0, got {args.batch_window_ms}")

    import torch
    import uvicorn

    from .serving import BundleError, Recommender, StoreError
    from .serving.app import create_app

    torch.set_num_threads(args.threads)
    try:
        recommender = Recommender(args.bundle, store=args.store)
    except (BundleError, StoreError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    app = create_app(recommender, batch_window_ms=None if args.no_batching else args.batch_window_ms)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    recommender.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
