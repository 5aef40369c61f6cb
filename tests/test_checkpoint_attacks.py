"""Crafted checkpoints: nothing a file names runs, and no file outside the run's folders is touched.

Every allow-listed global is called with hostile arguments, BUILD/SETITEMS target the stand-ins,
and the files go through each public load path. Payloads that would act write a marker file; a
test first shows the payload is live under plain ``pickle.loads``, so its absence means something.
"""
import os
import pickle
import struct
import zipfile

import pytest
import torch

from recbole_lru.checkpoint import CheckpointError, UnsafeCheckpointError, load_checkpoint
from recbole_lru.checkpoint.unpickler import _GLOBALS

MARK = "MARKER_FILE"


# --------------------------------------------------------------------------------------------
# A tiny pickle assembler (protocol 2) and a torch-format zip writer
# --------------------------------------------------------------------------------------------
def G(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def S(text):
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def I(n):  # noqa: E743
    return b"J" + struct.pack("<i", n)


def T(*items):
    return b"(" + b"".join(items) + b"t"


def R(fn, *args):
    return fn + T(*args) + b"R"


def D(**pairs):
    return b"}(" + b"".join(S(k) + v for k, v in pairs.items()) + b"u"


def BUILD(obj, state):
    return obj + state + b"b"


NONE, EMPTY_LIST, TRUE = b"N", b"]", b"\x88"


def write_archive(path, body, storages=None, proto=b"\x80\x02"):
    """A torch-format zip: archive/data.pkl holding ``body`` and archive/data/<key> entries."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", proto + body + b".")
        zf.writestr("archive/version", "3\n")
        for key, data in (storages or {}).items():
            zf.writestr(f"archive/data/{key}", data)
    return str(path)


def hostile(tmp_path):
    """Arguments that would act if a callable used them: code strings and a marker path."""
    code = f"__import__('os').system('touch {tmp_path / MARK}')"
    return [S(code), D(x=S(code)), S(str(tmp_path / MARK))]


def assert_refused(path, tmp_path, match=None):
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    assert not (tmp_path / MARK).exists()
    assert "\n" not in str(info.value)
    return info.value


# --------------------------------------------------------------------------------------------
# The payloads are live: plain pickle runs them
# --------------------------------------------------------------------------------------------
def test_payloads_are_live_under_plain_pickle(tmp_path):
    pickle.loads(b"\x80\x02" + R(G("os", "system"), S(f"touch {tmp_path / MARK}")) + b".")
    assert (tmp_path / MARK).exists()


def test_reduce_os_system_is_refused(tmp_path):
    path = write_archive(tmp_path / "evil.pth", D(config=R(G("os", "system"), S(f"touch {tmp_path / MARK}"))))
    err = assert_refused(path, tmp_path, "asks to import os.system")
    assert isinstance(err, UnsafeCheckpointError) and "would run arbitrary code" in str(err)


def test_torch_save_of_a_reduce_payload_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / MARK}",))

    torch.save({"config": Payload(), "state_dict": {}}, tmp_path / "evil.pth")
    assert_refused(tmp_path / "evil.pth", tmp_path, "would run arbitrary code")


@pytest.mark.parametrize("module,name", [
    ("builtins", "eval"), ("builtins", "exec"), ("builtins", "getattr"), ("builtins", "open"),
    ("__builtin__", "eval"), ("copyreg", "_reconstructor"), ("torch", "load"), ("torch._utils", "_rebuild_tensor"),
    ("subprocess", "Popen"), ("recbole.config.configurator", "eval"), ("yaml", "load"), ("numpy", "load"),
    ("torch.serialization", "load"), ("recbole.quick_start", "run_recbole"),
])
def test_globals_outside_the_allow_list_are_refused(module, name, tmp_path):
    path = write_archive(tmp_path / "evil.pth", R(G(module, name), S(f"touch {tmp_path / MARK}")))
    assert_refused(path, tmp_path, f"asks to import {module}.{name}")


# --------------------------------------------------------------------------------------------
# Every allow-listed global, called with hostile arguments
# --------------------------------------------------------------------------------------------
ALLOWED = sorted(_GLOBALS) + [
    ("recbole.model.sequential_recommender.sasrec", "SASRec"),  # model-class references (by pattern)
    ("recbole_lru.models.lrurec", "LRURec"),
    ("recbole_lru.models.lrurec", "torch"),
    ("yaml.loader", "FullLoader"),
    ("yaml", "UnsafeLoader"),
]


@pytest.mark.parametrize("module,name", ALLOWED, ids=[f"{m}.{n}" for m, n in ALLOWED])
@pytest.mark.parametrize("arg", [0, 1, 2], ids=["code", "dict", "path"])
def test_every_allowed_global_called_with_hostile_arguments(module, name, arg, tmp_path):
    path = write_archive(tmp_path / "evil.pth", R(G(module, name), hostile(tmp_path)[arg]))
    assert_refused(path, tmp_path)


@pytest.mark.parametrize("module,name", ALLOWED, ids=[f"{m}.{n}" for m, n in ALLOWED])
def test_every_allowed_global_with_newobj_and_kwargs(module, name, tmp_path):
    code = hostile(tmp_path)[0]
    newobj = G(module, name) + T(code) + b"\x81"  # NEWOBJ: cls.__new__(cls, *args)
    assert_refused(write_archive(tmp_path / "a.pth", newobj), tmp_path)
    newobj_ex = G(module, name) + T(code) + D(x=code) + b"\x92"  # NEWOBJ_EX (protocol 4) with kwargs
    assert_refused(write_archive(tmp_path / "b.pth", newobj_ex, proto=b"\x80\x04"), tmp_path)


def test_config_gadget_refused(tmp_path):
    """RecBole's Config.__init__ evaluates config-dict strings: the file must never reach it."""
    code = f"__import__('os').system('touch {tmp_path / MARK}')"
    config = R(G("recbole.config.configurator", "Config"), S("LRURec"), S("tiny"), NONE, D(x=S(code)))
    err = assert_refused(write_archive(tmp_path / "evil.pth", D(config=config)), tmp_path)
    assert "calls recbole.config.configurator.Config with arguments" in str(err)


# --------------------------------------------------------------------------------------------
# BUILD / SETITEMS on the stand-ins, and process state left as it was
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module,name", ALLOWED, ids=[f"{m}.{n}" for m, n in ALLOWED])
def test_build_with_slot_state_on_allowed_globals(module, name, tmp_path):
    """BUILD (None, {attr: value}) would setattr on the object the file named."""
    state = T(NONE, D(__init__=G("_codecs", "encode"), __call__=S("x")))
    assert_refused(write_archive(tmp_path / "evil.pth", BUILD(G(module, name), state)), tmp_path)
    assert_refused(write_archive(tmp_path / "b.pth", BUILD(G(module, name), D(__setstate__=S("x")))), tmp_path)


def test_build_and_setitems_on_records(tmp_path):
    enum = R(G("recbole.utils.enum_type", "ModelType"), I(1))
    cases = {
        "enum": BUILD(enum, D(_value_=I(99))),
        "enum_slots": BUILD(enum, T(NONE, D(_value_=I(99)))),
        "device": BUILD(R(G("torch", "device"), S("cpu")), D(type=S("cuda"))),
        "odict_twice": BUILD(BUILD(R(G("collections", "OrderedDict")), D()), D()),
        "odict_slots": BUILD(R(G("collections", "OrderedDict")), T(NONE, D(kind=S("config")))),
        "setitem_on_enum": enum + S("k") + S("v") + b"s",
        "config_slots": BUILD(G("recbole.config.configurator", "Config") + T() + b"\x81", T(NONE, D(kind=S("x")))),
    }
    for name, body in cases.items():
        assert_refused(write_archive(tmp_path / f"{name}.pth", body), tmp_path)


def test_process_state_is_unchanged_after_attacks(tmp_path):
    from recbole.utils.enum_type import ModelType

    from recbole_lru.checkpoint import unpickler

    before = {k: (type(v), getattr(v, "args", None)) for k, v in _GLOBALS.items()}
    config_attrs = dict(vars(unpickler._ConfigType))
    test_build_and_setitems_on_records(tmp_path)
    for module, name in ALLOWED:
        test_build_with_slot_state_on_allowed_globals(module, name, tmp_path)
    assert {k: (type(v), getattr(v, "args", None)) for k, v in _GLOBALS.items()} == before
    assert dict(vars(unpickler._ConfigType)) == config_attrs
    assert ModelType.SEQUENTIAL.value == 2 and ModelType(2) is ModelType.SEQUENTIAL


# --------------------------------------------------------------------------------------------
# Malformed values of allowed kinds
# --------------------------------------------------------------------------------------------
def _dtype(name, state=None):
    body = R(G("numpy", "dtype"), S(name), b"\x89", TRUE)
    return BUILD(body, state) if state is not None else body


@pytest.mark.parametrize("case", ["enum_value", "enum_code", "dtype_object", "dtype_state", "scalar_bytes",
                                  "storage_key_path", "storage_missing", "tensor_bounds", "tensor_hooks",
                                  "config_model_path", "config_model_class", "class_ref_value", "set_of_records"])
def test_malformed_values_are_one_line_errors(case, tmp_path):
    storage = b"(" + S("storage") + G("torch", "FloatStorage") + S("0") + S("cpu") + I(2) + b"tQ"
    odict = R(G("collections", "OrderedDict"))
    tensor = lambda size, hooks=odict: R(G("torch._utils", "_rebuild_tensor_v2"), storage, I(0), T(I(size)),  # noqa: E731
                                         T(I(1)), b"\x89", hooks)
    config = lambda **state: BUILD(G("recbole.config.configurator", "Config") + T() + b"\x81", D(**state))  # noqa: E731
    final = D(model=S("LRURec"), dataset=S("tiny"), MODEL_TYPE=R(G("recbole.utils.enum_type", "ModelType"), I(2)))
    bodies = {
        "enum_value": R(G("recbole.utils.enum_type", "ModelType"), I(99)),
        "enum_code": R(G("recbole.utils.enum_type", "ModelType"), S("__import__('os')")),
        "dtype_object": R(G("numpy._core.multiarray", "scalar"), _dtype("O"), R(G("_codecs", "encode"), S("x" * 8), S("latin1"))),
        "dtype_state": _dtype("f8", T(I(3), S("!"))),  # a malformed state gave SystemError before
        "scalar_bytes": R(G("numpy._core.multiarray", "scalar"), _dtype("f8"), R(G("_codecs", "encode"), S("abc"), S("latin1"))),
        "storage_key_path": b"(" + S("storage") + G("torch", "FloatStorage") + S("../../etc/passwd") + S("cpu") + I(2) + b"tQ",
        "storage_missing": b"(" + S("storage") + G("torch", "FloatStorage") + S("7") + S("cpu") + I(2) + b"tQ",
        "tensor_bounds": tensor(1000),
        "tensor_hooks": tensor(2, R(G("collections", "OrderedDict"), EMPTY_LIST + S("x") + b"a")),
        "config_model_path": config(final_config_dict=D(model=S("../../x"), dataset=S("tiny"),
                                                        MODEL_TYPE=R(G("recbole.utils.enum_type", "ModelType"), I(2))),
                                    model=S("../../x")),
        "config_model_class": config(final_config_dict=final, model=S("LRURec"), dataset=S("tiny"),
                                     model_class=G("recbole.model.sequential_recommender.sasrec", "SASRec")),
        "class_ref_value": D(x=G("recbole_lru.models.lrurec", "LRURec")),
        "set_of_records": R(G("builtins", "set"), EMPTY_LIST + odict + b"a"),
    }
    path = write_archive(tmp_path / "bad.pth", bodies[case], storages={"0": b"\x00" * 8})
    assert_refused(path, tmp_path)


def test_torchscript_archive_is_refused(tmp_path):
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "script.pth")
    assert_refused(tmp_path / "script.pth", tmp_path, "TorchScript archive")


def test_a_valid_crafted_archive_loads_as_plain_data(tmp_path):
    """The same assembler builds a file the loader accepts: the refusals above are not blanket ones."""
    storage = b"(" + S("storage") + G("torch", "FloatStorage") + S("0") + S("cpu") + I(2) + b"tQ"
    tensor = R(G("torch._utils", "_rebuild_tensor_v2"), storage, I(0), T(I(2)), T(I(1)), b"\x89",
               R(G("collections", "OrderedDict")))
    body = D(w=tensor, kind=R(G("recbole.utils.enum_type", "ModelType"), I(2)), dev=R(G("torch", "device"), S("cpu")),
             b=R(G("_codecs", "encode"), S("ab"), S("latin1")), s=R(G("builtins", "set"), EMPTY_LIST + I(1) + b"a"))
    out = load_checkpoint(write_archive(tmp_path / "ok.pth", body, storages={"0": struct.pack("<2f", 1.5, -2.0)}))
    from recbole.utils.enum_type import ModelType

    assert torch.equal(out["w"], torch.tensor([1.5, -2.0])) and out["kind"] is ModelType.SEQUENTIAL
    assert out["dev"] == torch.device("cpu") and out["b"] == b"ab" and out["s"] == {1}
