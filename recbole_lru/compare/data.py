"""The data a comparison reads: where a dataset's atomic files are, settings from its YAML, and the
small user subset of a ``--quick`` run.

Nothing here knows where the project's checkout is: a dataset is found under ``--data_path`` (or
RecBole's default ``dataset/`` in the working directory), and ``ml-100k`` also in RecBole's wheel.
"""
from __future__ import annotations

import os
import random
import shutil

__all__ = ["resolve_data_dir", "dataset_max_len", "dataset_setting", "dataset_yaml_files", "inter_columns",
           "write_user_subset"]


def resolve_data_dir(dataset: str, data_path: str | None) -> str | None:
    """The folder that holds ``<dataset>.inter``, or None (then RecBole gets ``data_path`` as is)."""
    # RecBole's own default data_path is ``dataset/`` under the working directory
    candidates = [os.path.join(data_path or "dataset", dataset)]
    if dataset == "ml-100k":
        try:
            import recbole

            candidates.append(os.path.join(os.path.dirname(recbole.__file__), "dataset_example", dataset))
        except ImportError:  # pragma: no cover
            pass
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, f"{dataset}.inter")):
            return os.path.abspath(folder)
    return None


def dataset_max_len(dataset: str) -> int:
    """``MAX_ITEM_LIST_LENGTH`` from the dataset's YAML (the plugin's, else RecBole's), else 50."""
    return int(dataset_setting(dataset, "MAX_ITEM_LIST_LENGTH", 50))


def dataset_yaml_files(dataset: str) -> list[str]:
    from .. import registry

    files = [registry.find_yaml("dataset", dataset)]
    try:
        import recbole

        files.append(os.path.join(os.path.dirname(recbole.__file__), "properties", "dataset", f"{dataset}.yaml"))
    except ImportError:  # pragma: no cover
        pass
    return [str(f) for f in files if f and os.path.isfile(f)]


def inter_columns(data_dir: str, dataset: str, separator: str = "\t") -> list[str]:
    """Field names in the header of ``<data_dir>/<dataset>.inter``."""
    with open(os.path.join(data_dir, f"{dataset}.inter"), encoding="utf-8") as fh:
        header = fh.readline().rstrip("\r\n")
    return [h.split(":")[0] for h in header.split(separator) if h]


def dataset_setting(dataset: str, key: str, default=None):
    """A key of the dataset's YAML (the plugin's first, then RecBole's), else ``default``."""
    import yaml

    for f in dataset_yaml_files(dataset):
        with open(f) as fh:
            data = yaml.safe_load(fh) or {}
        if data.get(key) is not None:
            return data[key]
    return default


def write_user_subset(src_dir: str, dataset: str, dest_root: str, n_users: int, user_field: str = "user_id",
                      separator: str = "\t", seed: int = 0, max_per_user: int | None = None,
                      time_field: str | None = None) -> tuple[str, int]:
    """Copy ``n_users`` randomly chosen users' interactions of ``src_dir/<dataset>.inter`` to
    ``dest_root/<dataset>/``; other atomic files (``.item``, ``.user``, ...) are linked as they are.
    With ``max_per_user`` only each user's latest interactions (by ``time_field`` when the file has
    it, else file order) are kept.

    Returns the new folder and the number of users kept.
    """
    dest = os.path.join(dest_root, dataset)
    os.makedirs(dest, exist_ok=True)
    src = os.path.join(src_dir, f"{dataset}.inter")
    with open(src, encoding="utf-8") as fh:
        header = fh.readline()
        names = [h.split(":")[0] for h in header.rstrip("\r\n").split(separator)]
        if user_field not in names:
            raise ValueError(f"{src}: no column {user_field!r} in header {header.strip()!r}")
        col = names.index(user_field)
        lines = fh.readlines()
    users = []
    seen = set()
    for line in lines:
        parts = line.rstrip("\r\n").split(separator)
        if len(parts) > col and parts[col] not in seen:
            seen.add(parts[col])
            users.append(parts[col])
    keep = set(random.Random(seed).sample(users, min(n_users, len(users))))
    kept = [ln for ln in lines if (p := ln.rstrip("\r\n").split(separator)) and len(p) > col and p[col] in keep]
    if max_per_user:
        tcol = names.index(time_field) if time_field in names else None
        by_user = {}
        for order, line in enumerate(kept):
            parts = line.rstrip("\r\n").split(separator)
            try:
                t = float(parts[tcol]) if tcol is not None else order
            except (ValueError, IndexError):
                t = order
            by_user.setdefault(parts[col], []).append((t, order, line))
        chosen = sorted(o for rows in by_user.values() for (_, o, _) in sorted(rows)[-max_per_user:])
        kept = [kept[o] for o in chosen]
    with open(os.path.join(dest, f"{dataset}.inter"), "w", encoding="utf-8") as out:
        out.write(header)
        for line in kept:
            out.write(line if line.endswith("\n") else line + "\n")
    for fname in os.listdir(src_dir):
        if fname.startswith(f"{dataset}.") and fname != f"{dataset}.inter":
            target = os.path.join(dest, fname)
            if not os.path.exists(target):
                try:
                    os.symlink(os.path.abspath(os.path.join(src_dir, fname)), target)
                except OSError:
                    shutil.copy(os.path.join(src_dir, fname), target)
    return dest, len(keep)
