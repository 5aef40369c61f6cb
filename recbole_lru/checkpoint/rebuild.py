"""Records -> real objects, from validated plain values (see :mod:`recbole_lru.checkpoint`)."""
from __future__ import annotations

import collections
import math

import numpy as np
import torch

from .unpickler import _IDENTIFIER, _Rec, _Refused, _ints

# --------------------------------------------------------------------------------------------
_PLAIN = (str, int, float, bool, bytes, type(None), complex)
_NUMERIC_KINDS = "biufc"  # bool, int, uint, float, complex: never object, void or datetime dtypes


def _materialize(obj, device, memo: dict):
    if type(obj) in _PLAIN or isinstance(obj, torch.device):
        return obj
    if id(obj) in memo:
        return memo[id(obj)]
    t = type(obj)
    if t is list:
        out = memo[id(obj)] = []
        out.extend(_materialize(x, device, memo) for x in obj)
        return out
    if t is dict:
        out = memo[id(obj)] = {}
        for k, v in obj.items():
            out[_key(k, device, memo)] = _materialize(v, device, memo)
        return out
    if t is tuple:
        out = memo[id(obj)] = tuple(_materialize(x, device, memo) for x in obj)
        return out
    if t in (set, frozenset):
        return obj  # built from plain items by _set
    if t is not _Rec:
        raise _Refused(f"holds a {t.__name__}, which is not part of a RecBole checkpoint")
    out = memo[id(obj)] = _record(obj, device, memo)
    return out


def _key(k, device, memo):
    k = _materialize(k, device, memo)
    if type(k) not in (str, int, float, bool, type(None), tuple):
        raise _Refused(f"uses a {type(k).__name__} as a dictionary key")
    return k


def _np_dtype(rec: _Rec) -> np.dtype:
    name, state = rec.args[0], rec.state
    try:
        dtype = np.dtype(name)
    except TypeError:
        raise _Refused(f"names the numpy dtype {name!r}") from None
    if dtype.kind not in _NUMERIC_KINDS or dtype.names is not None or dtype.subdtype is not None:
        raise _Refused(f"names the numpy dtype {name!r}, which is not a plain number type")
    if state is not None:
        if not (type(state) is tuple and len(state) >= 2 and state[1] in ("<", ">", "|", "=")):
            raise _Refused("gives a numpy dtype a malformed state")
        dtype = dtype.newbyteorder(state[1]) if state[1] in "<>" else dtype
    return dtype


def _record(rec: _Rec, device, memo):
    kind = rec.kind
    if kind == "tensor":
        t = rec.args[0]
        return t.to(device) if device is not None else t
    if kind == "odict":
        out = collections.OrderedDict((_key(k, device, memo), _materialize(v, device, memo)) for k, v in rec.items)
        if rec.state is not None:
            if not (type(rec.state) is dict and set(rec.state) <= {"_metadata"}):
                raise _Refused("gives an OrderedDict state other than _metadata")
            if "_metadata" in rec.state:
                out._metadata = _materialize(rec.state["_metadata"], device, memo)
        return out
    if kind == "enum":
        from recbole.utils import enum_type

        cls_name, value = rec.args
        try:
            return getattr(enum_type, cls_name)(value)
        except ValueError:
            raise _Refused(f"holds {cls_name}({value!r}), which is not a member") from None
    if kind == "dtype":
        return _np_dtype(rec)
    if kind == "scalar":
        dtype = _np_dtype(rec.args[0])
        if len(rec.args[1]) != dtype.itemsize:
            raise _Refused("holds a numpy scalar whose bytes do not fit its dtype")
        return np.frombuffer(rec.args[1], dtype=dtype)[0]
    if kind == "array":
        s = rec.state
        if not (type(s) is tuple and len(s) == 5 and _ints(s[1]) and all(n >= 0 for n in s[1])
                and isinstance(s[2], _Rec) and s[2].kind == "dtype" and type(s[3]) is bool and type(s[4]) is bytes):
            raise _Refused("holds a numpy array with a malformed state")
        dtype = _np_dtype(s[2])
        if len(s[4]) != math.prod(s[1]) * dtype.itemsize:
            raise _Refused("holds a numpy array whose bytes do not fit its shape")
        return np.frombuffer(s[4], dtype=dtype).reshape(s[1], order="F" if s[3] else "C").copy()
    if kind == "config":
        return _config(rec, device, memo)
    raise _Refused(f"holds a bare {kind} where a value belongs")


# Config attributes a checkpoint may set, with the type each must have
_CONFIG_DICTS = ("final_config_dict", "internal_config_dict", "external_config_dict", "file_config_dict",
                 "variable_config_dict", "cmd_config_dict")


def _config(rec: _Rec, device, memo):
    from recbole.config.configurator import Config
    from recbole.utils.enum_type import ModelType

    state = rec.state
    if type(state) is tuple and len(state) == 2 and state[1] is None:
        state = state[0]
    if type(state) is not dict or not all(type(k) is str for k in state):
        raise _Refused("holds a Config without its settings")
    values = {}
    for name in _CONFIG_DICTS:
        v = _materialize(state.get(name, {}), None, memo)
        if type(v) is not dict or not all(type(k) is str for k in v):
            raise _Refused(f"holds a Config whose {name} is not a dict of settings")
        values[name] = v
    final = values["final_config_dict"]
    model, dataset = state.get("model", final.get("model")), state.get("dataset", final.get("dataset"))
    if type(model) is not str or not _IDENTIFIER.fullmatch(model) or final.get("model") not in (None, model):
        raise _Refused(f"holds a Config whose model {model!r} is not a model name")
    if type(dataset) is not str or final.get("dataset") not in (None, dataset):
        raise _Refused(f"holds a Config whose dataset {dataset!r} is not a dataset name")
    if not isinstance(final.get("MODEL_TYPE"), ModelType):
        raise _Refused("holds a Config without a MODEL_TYPE")
    ref = state.get("model_class")
    if ref is not None and not (isinstance(ref, _Rec) and ref.kind == "class" and ref.args[1] == model):
        raise _Refused(f"holds a Config whose model_class is not the class of {model}")
    parameters = _materialize(state.get("parameters", {}), None, memo)
    if type(parameters) is not dict or not all(type(v) is list for v in parameters.values()):
        raise _Refused("holds a Config whose parameters are not lists of names")

    import yaml

    config = Config.__new__(Config)
    for name, value in (*values.items(), ("parameters", parameters), ("model", model), ("dataset", dataset),
                        ("yaml_loader", yaml.FullLoader), ("model_class", _model_class(model))):
        object.__setattr__(config, name, value)
    final.setdefault("model", model)
    final.setdefault("dataset", dataset)
    return config


def _model_class(name: str):
    """The class RecBole builds for ``name`` here (None if unknown: the caller's get_model says so)."""
    from recbole.utils import utils

    try:
        return utils.get_model(name)
    except (ValueError, ImportError, AttributeError):
        return None
