"""The stand-ins and the unpickler (see :mod:`recbole_lru.checkpoint` for why none can run code)."""
from __future__ import annotations

import io
import pickle
import re
import zipfile

import torch


class _Refused(Exception):
    """Raised inside the unpickler; becomes an UnsafeCheckpointError naming the file."""


class _Damaged(Exception):
    """A malformed archive entry; becomes a CheckpointError naming the file."""


# --------------------------------------------------------------------------------------------
# Stand-ins
# --------------------------------------------------------------------------------------------
class _Frozen(type):
    """Metaclass of the stand-in types: a file cannot set or delete their class attributes."""

    def __setattr__(cls, name, value):
        raise _Refused(f"sets the attribute {name!r} on a class")

    def __delattr__(cls, name):
        raise _Refused(f"deletes the attribute {name!r} of a class")


class _Rec(metaclass=_Frozen):
    """Plain data from the file: ``kind``, the call's ``args``, BUILD ``state``, SETITEMS ``items``."""

    __slots__ = ("kind", "args", "state", "items")
    _BUILDS = {"config", "odict", "dtype", "array"}  # the kinds a real checkpoint BUILDs

    def __init__(self, kind, args=()):
        for name, value in (("kind", kind), ("args", args), ("state", None), ("items", [])):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise _Refused(f"sets the attribute {name!r} on a stand-in ({self.kind})")

    def __setstate__(self, state):
        if self.kind not in self._BUILDS or self.state is not None:
            raise _Refused(f"gives a state to a stand-in ({self.kind}) that takes none")
        object.__setattr__(self, "state", state)

    def __call__(self, *args, **kwargs):
        raise _Refused(f"calls a stand-in ({self.kind}) as a function")

    def __setitem__(self, key, value):
        if self.kind != "odict":
            raise _Refused(f"sets an item on a stand-in ({self.kind})")
        self.items.append((key, value))


class _ConfigType(metaclass=_Frozen):
    """Stands in for RecBole's ``Config`` (the pickle makes it with NEWOBJ, which needs a type)."""

    def __new__(cls, *args, **kwargs):
        if args or kwargs:
            raise _Refused("calls recbole.config.configurator.Config with arguments")
        return _Rec("config")


class _Call(metaclass=_Frozen):
    """A named stand-in callable: ``fn`` checks the arguments and returns a record or plain value."""

    __slots__ = ("name", "fn")

    def __init__(self, name, fn):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "fn", fn)

    def __setattr__(self, name, value):
        raise _Refused(f"sets the attribute {name!r} on {self.name}")

    def __call__(self, *args, **kwargs):
        if kwargs:
            raise _Refused(f"calls {self.name} with keyword arguments")
        return self.fn(self.name, *args)


def _need(ok: bool, name: str, what: str) -> None:
    if not ok:
        raise _Refused(f"calls {name} with {what}")


def _is_int(v) -> bool:
    return type(v) is int


def _ints(v) -> bool:
    return type(v) is tuple and all(_is_int(x) for x in v)


def _reference(name, *args):
    raise _Refused(f"calls {name}, which a checkpoint only refers to")


def _latin1(name, *args):
    _need(len(args) == 2 and type(args[0]) is str and args[1] in ("latin1", "latin-1"), name, "non-text arguments")
    return args[0].encode("latin1")


def _bytes(name, *args):
    _need(not args, name, "arguments (a checkpoint writes only empty bytes this way)")
    return b""


def _set(name, *args):
    _need(len(args) <= 1 and (not args or type(args[0]) in (list, tuple)), name, "a non-list argument")
    items = args[0] if args else ()
    _need(all(type(x) in (str, int, float, bool, type(None)) for x in items), name, "non-plain items")
    return set(items) if name.endswith("set") and not name.endswith("frozenset") else frozenset(items)


_DEVICE = re.compile(r"(cpu|cuda|mps|meta|xpu)(:\d{1,3})?")


def _device(name, *args):
    _need(1 <= len(args) <= 2 and type(args[0]) is str and _DEVICE.fullmatch(args[0]) is not None
          and (len(args) == 1 or _is_int(args[1])), name, "an unknown device")
    return torch.device(*args)


def _odict(name, *args):
    _need(not args or (len(args) == 1 and type(args[0]) is list and not args[0]), name, "arguments")
    return _Rec("odict")


def _enum(name, *args):
    _need(len(args) == 1 and type(args[0]) in (int, str), name, "a value that is not an int or str")
    return _Rec("enum", (name.rsplit(".", 1)[1], args[0]))


def _dtype(name, *args):
    _need(1 <= len(args) <= 3 and type(args[0]) is str and all(type(a) is bool for a in args[1:]), name,
          "arguments that are not a dtype name")
    return _Rec("dtype", args[:1])


def _scalar(name, *args):
    _need(len(args) == 2 and isinstance(args[0], _Rec) and args[0].kind == "dtype" and type(args[1]) is bytes,
          name, "arguments that are not (dtype, bytes)")
    return _Rec("scalar", args)


def _reconstruct(name, *args):
    _need(len(args) == 3 and isinstance(args[0], _Rec) and args[0].kind == "ndarray_type", name,
          "arguments other than (ndarray, (0,), b'b')")
    return _Rec("array")


def _storage_kind(dtype):
    return _Rec("storage_type", (dtype,))


def _tensor(name, *args):
    _need(6 <= len(args) <= 7, name, "the wrong number of arguments")
    storage, offset, size, stride, requires_grad, hooks = args[:6]
    _need(isinstance(storage, _Rec) and storage.kind == "storage", name, "something that is not a storage")
    _need(_is_int(offset) and offset >= 0 and _ints(size) and _ints(stride) and len(size) == len(stride)
          and all(s >= 0 for s in size + stride) and type(requires_grad) is bool, name, "malformed sizes")
    _need(isinstance(hooks, _Rec) and hooks.kind == "odict" and not hooks.items and hooks.state is None,
          name, "backward hooks")
    _need(len(args) == 6 or args[6] is None or args[6] == {}, name, "tensor metadata")
    untyped, dtype = storage.args
    t = torch.empty(0, dtype=dtype).set_(untyped, offset, size, stride)  # torch checks the bounds
    if requires_grad:
        _need(t.is_floating_point() or t.is_complex(), name, "requires_grad on an integer tensor")
        t.requires_grad_(True)
    return _Rec("tensor", (t,))


def _parameter(name, *args):
    _need(len(args) == 3 and isinstance(args[0], _Rec) and args[0].kind == "tensor" and type(args[1]) is bool
          and isinstance(args[2], _Rec) and args[2].kind == "odict" and not args[2].items, name, "malformed arguments")
    return _Rec("tensor", (torch.nn.Parameter(args[0].args[0].detach(), requires_grad=args[1]),))


_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
}
_ENUMS = ("ModelType", "InputType", "EvaluatorType", "FeatureSource", "FeatureType", "KGDataLoaderState")
_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")


def _table() -> dict:
    t = {("torch", n): _storage_kind(d) for n, d in _STORAGE_DTYPES.items()}
    t.update({("recbole.utils.enum_type", n): _Call(f"recbole.utils.enum_type.{n}", _enum) for n in _ENUMS})
    t.update({(m, "scalar"): _Call(f"{m}.scalar", _scalar) for m in _NUMPY_CORE})
    t.update({(m, "_reconstruct"): _Call(f"{m}._reconstruct", _reconstruct) for m in _NUMPY_CORE})
    for builtins in ("builtins", "__builtin__"):
        t.update({(builtins, n): _Call(f"builtins.{n}", _set) for n in ("set", "frozenset")})
        t[(builtins, "bytes")] = _Call("builtins.bytes", _bytes)
    t.update({
        ("recbole.config.configurator", "Config"): _ConfigType,
        ("collections", "OrderedDict"): _Call("collections.OrderedDict", _odict),
        ("torch._utils", "_rebuild_tensor_v2"): _Call("torch._utils._rebuild_tensor_v2", _tensor),
        ("torch._utils", "_rebuild_parameter"): _Call("torch._utils._rebuild_parameter", _parameter),
        ("torch", "device"): _Call("torch.device", _device),
        ("_codecs", "encode"): _Call("_codecs.encode", _latin1),
        ("numpy", "dtype"): _Call("numpy.dtype", _dtype),
        ("numpy", "ndarray"): _Rec("ndarray_type"),
    })
    return t


_GLOBALS = _table()
_MODEL_MODULES = re.compile(r"(recbole\.model|recbole_lru\.models)(\.[A-Za-z_][A-Za-z0-9_]*)+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self._archive, self._prefix, self._storages = archive, prefix, {}

    def find_class(self, module, name):
        if (module, name) in _GLOBALS:
            return _GLOBALS[(module, name)]
        if _MODEL_MODULES.fullmatch(module) and _IDENTIFIER.fullmatch(name):
            return _Rec("class", (module, name))  # Config.model_class: a reference, resolved by name later
        if module in ("yaml", "yaml.loader") and name.endswith("Loader"):
            return _Call(f"{module}.{name}", _reference)  # Config.yaml_loader: replaced by RecBole's own
        raise _Refused(f"asks to import {module}.{name}, which is not part of a RecBole checkpoint; "
                       f"unpickling it would run arbitrary code")

    def persistent_load(self, pid):
        if not (type(pid) is tuple and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _Rec)
                and pid[1].kind == "storage_type" and type(pid[2]) is str and _IDENTIFIER.fullmatch("k" + pid[2])
                and type(pid[3]) is str and _is_int(pid[4]) and pid[4] >= 0):
            raise _Refused("names a tensor storage in a form torch.save never writes")
        dtype, key, numel = pid[1].args[0], pid[2], pid[4]
        if key not in self._storages:
            data = _read_member(self._archive, f"{self._prefix}data/{key}")
            itemsize = torch.empty(0, dtype=dtype).element_size()
            if len(data) != numel * itemsize:
                raise _Damaged(f"holds a tensor storage of {len(data)} bytes where {numel * itemsize} "
                               f"were recorded: the file is damaged")
            raw = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
            self._storages[key] = (raw.untyped_storage(), dtype)
        untyped, stored_dtype = self._storages[key]
        if stored_dtype != dtype:
            raise _Refused("reads one storage as two dtypes")
        return _Rec("storage", (untyped, dtype))


def _read_member(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise _Damaged(f"has no archive entry {name}: the file is damaged or not a torch checkpoint") from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise _Damaged(f"holds a compressed entry {name}; torch.save never compresses: not a torch checkpoint")
    return archive.read(info)
