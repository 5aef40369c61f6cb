"""Checks on a dataset's atomic files before RecBole parses them, so that a malformed file gives
one error naming the file, the problem and the fix instead of a traceback from deep in pandas."""
from __future__ import annotations

import functools
import math

__all__ = ["DataFormatError", "check_atomic_header", "check_rows", "install"]


class DataFormatError(ValueError):
    """An atomic file (.inter/.user/.item) that RecBole cannot read."""


def check_atomic_header(filepath: str, header: str, separator: str, required: dict) -> None:
    """Validate the header line of an atomic file.

    Args:
        header: the first line, e.g. ``user_id:token\\titem_id:token\\ttimestamp:float``.
        required: field name -> what it is for (e.g. ``{"user_id": "USER_ID_FIELD"}``).
    """
    from recbole.utils.enum_type import FeatureType

    valid = [t.value for t in FeatureType]
    fields = {}
    for column in header.split(separator):
        if column.count(":") != 1:
            raise DataFormatError(
                f"{filepath}: header column {column!r} is not 'name:type'. The first line must list "
                f"the columns as name:type separated by {separator!r}, with type one of {valid} "
                f"(e.g. user_id:token item_id:token timestamp:float)."
            )
        name, ftype = column.split(":")
        if ftype not in valid:
            raise DataFormatError(f"{filepath}: column {name!r} has type {ftype!r}; use one of {valid}.")
        fields[name] = ftype
    for name, role in required.items():
        if name and name not in fields:
            raise DataFormatError(
                f"{filepath}: no column {name!r} ({role}); the header has {list(fields)}. Rename the "
                f"column or set {role} in your config."
            )


def check_rows(filepath: str, header: str, separator: str, encoding: str, time_field: str | None) -> None:
    """Every row has one value per header column, and the time field (if any) a finite number.

    pandas, which RecBole reads with, fills a missing field with NaN, and reads an empty, ``nan``
    or ``inf`` time as a float; RecBole then orders each user's items by it, so such a row would
    silently move items (and change the metrics). Blank lines are skipped, as pandas does.
    """
    names = [c.split(":")[0] for c in header.split(separator)]
    width = len(names)
    time_col = names.index(time_field) if time_field in names else None
    with open(filepath, "r", encoding=encoding) as fh:
        next(fh, None)
        for number, line in enumerate(fh, start=2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split(separator)
            if len(fields) < width:
                raise DataFormatError(
                    f"{filepath}, line {number}: {len(fields)} values where the header has {width} columns; "
                    f"column {len(fields) + 1} ({names[len(fields)]}) is missing. Give every row one value per "
                    f"column, separated by {separator!r}.")
            if len(fields) > width:
                raise DataFormatError(
                    f"{filepath}, line {number}: {len(fields)} values where the header has {width} columns; "
                    f"column {width + 1} is extra (a stray {separator!r} in a value?). Give every row one value "
                    f"per column.")
            if time_col is not None:
                value = fields[time_col].strip()
                try:
                    ok = math.isfinite(float(value))
                except ValueError:
                    ok = False
                if not ok:
                    shown = "empty" if not value else f"{value!r}"
                    raise DataFormatError(
                        f"{filepath}, line {number}, column {time_col + 1} ({time_field}): the time is {shown}, not "
                        f"a finite number. Items are ordered by {time_field}: fix the value or drop the row.")


def install() -> None:
    """Wrap ``Dataset._load_feat`` with the file checks and ``Dataset.build`` with a check that
    training rows remain (once)."""
    from recbole.data.dataset.dataset import Dataset
    from recbole.utils.enum_type import FeatureSource

    original = Dataset._load_feat
    if getattr(original, "_recbole_lru", False):
        return

    @functools.wraps(original)
    def _load_feat(self, filepath, source):
        sep = self.config["field_separator"]
        with open(filepath, "r", encoding=self.config["encoding"]) as fh:
            header = fh.readline().rstrip("\r\n")
            has_rows = bool(fh.readline().strip())
        if source == FeatureSource.INTERACTION:
            required = {self.config["USER_ID_FIELD"]: "USER_ID_FIELD", self.config["ITEM_ID_FIELD"]: "ITEM_ID_FIELD"}
            if self.config["MODEL_TYPE"].name == "SEQUENTIAL":
                required[self.config["TIME_FIELD"]] = "TIME_FIELD (sequential models order items by it)"
            required = {name: role for name, role in required.items() if name}  # TIME_FIELD: ~ needs none
            check_atomic_header(filepath, header, sep, required)
            load_col, unload_col = self._get_load_and_unload_col(source)
            for name in required:
                if (load_col is not None and name not in load_col) or (unload_col and name in unload_col):
                    cols = ", ".join(required)
                    raise DataFormatError(
                        f"{filepath}: column {name!r} is in the file but not loaded; add it to load_col: in a "
                        f"YAML file load_col: {{inter: [{cols}]}}, on the command line "
                        f"--load_col=\"{{inter: [{cols}]}}\"."
                    )
            if not has_rows:
                raise DataFormatError(f"{filepath}: the file has a header but no interactions.")
            time_field = self.config["TIME_FIELD"]
            loaded = load_col is None or time_field in load_col
            check_rows(filepath, header, sep, self.config["encoding"], time_field if loaded else None)
        else:
            check_atomic_header(filepath, header, sep, {})
            check_rows(filepath, header, sep, self.config["encoding"], None)
        try:
            return original(self, filepath, source)
        except ValueError as err:
            raise DataFormatError(
                f"{filepath}: cannot parse the file ({err}). Check that every row has one value per "
                f"header column separated by {sep!r}, and that :float columns (e.g. the timestamp) are numbers."
            ) from None

    _load_feat._recbole_lru = True
    Dataset._load_feat = _load_feat

    original_build = Dataset.build

    @functools.wraps(original_build)
    def build(self):
        datasets = original_build(self)
        if datasets and len(datasets[0]) == 0:
            need = ""
            if self.config["MODEL_TYPE"].name == "SEQUENTIAL":
                need = (" A sequential model trains on users with at least 2 interactions (one input "
                        "item and one target); users with a single interaction are dropped.")
            raise DataFormatError(
                f"Dataset '{self.dataset_name}': the training split is empty after filtering and "
                f"splitting ({self.user_num - 1} users).{need} Add "
                f"interactions, or relax user_inter_num_interval / item_inter_num_interval."
            )
        return datasets

    build._recbole_lru = True
    Dataset.build = build
