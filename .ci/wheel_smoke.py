"""Run by .ci/run with the Python of a fresh virtual environment holding the built wheel, from a
folder outside the checkout: the installed package (not the source tree) must import, register its
models and find its YAML files."""
import os
import sys
from pathlib import Path

prefix = Path(sys.prefix).resolve()

import recbole_lru  # noqa: E402
from recbole_lru import catalog  # noqa: E402

where = Path(recbole_lru.__file__).resolve()
assert prefix in where.parents, f"recbole_lru was imported from {where}, not from the wheel in {prefix}"
roots = catalog.properties_dirs()
assert roots and all(prefix in r.parents for r in roots), f"YAML read from {roots}, not from {prefix}"
for kind, name in (("model", "LRURec"), ("model", "LinRec"), ("model", "SASRecWS"), ("dataset", "ml-1m")):
    assert catalog.find_yaml(kind, name) is not None, f"{kind}/{name}.yaml is missing from the wheel"
assert (roots[0] / "hyper" / "lrurec.hyper").is_file()

from recbole.config import Config  # noqa: E402
from recbole.utils import get_model  # noqa: E402

assert get_model("LRURec") is recbole_lru.LRURec
config = Config(model="LRURec", dataset="ml-100k", config_dict={"train_neg_sample_args": None})
assert config["r_min"] == 0.8 and config["learner"] == "adamw", "LRURec.yaml was not applied"
recbole_lru.unregister()
print(f"wheel smoke check passed: {where.parent} (YAML in {roots[0]}), cwd {os.getcwd()}")
