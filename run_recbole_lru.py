"""Train and evaluate LRURec, LinRec or any RecBole model: RecBole's run_recbole.py flags plus
--key=value overrides, --params_file for tuning and --resume. See README.md."""
import sys

from recbole_lru.cli import main

if __name__ == "__main__":
    sys.exit(main())
