"""The models run under torch.compile and bf16 autocast on CPU, matching eager fp32."""
import pytest
import torch

from conftest import build_model
from test_lrurec import _batch


@pytest.mark.slow  # torch.compile's first trace
@pytest.mark.parametrize("name,extra", [("LRURec", {}), ("LinRec", {"causal": True})])
def test_compiled_forward_equals_eager(name, extra):
    torch.manual_seed(0)
    m = build_model(name, n_items=30, **extra).eval()
    inter = _batch([[3, 4, 5], [7], [1, 2, 3, 4, 5, 6, 7]], 9)
    seq, lens = inter["item_id_list"], inter["item_length"]
    eager = m(seq, lens)
    # aot_eager traces the whole forward through dynamo and AOT autograd without a C++ build
    compiled = torch.compile(m.forward, backend="aot_eager")
    assert torch.allclose(compiled(seq, lens), eager, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,extra", [("LRURec", {}), ("LinRec", {"causal": True})])
def test_bf16_autocast_keeps_recurrence_precise(name, extra):
    torch.manual_seed(0)
    m = build_model(name, n_items=30, **extra).eval()
    inter = _batch([[3, 4, 5, 9, 11, 2], [7, 2]], 8)
    ref = m.full_sort_predict(inter)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m.full_sort_predict(inter)
    assert torch.isfinite(out).all()
    # bf16 matmuls (3 significant digits) around an fp32/complex64 recurrence
    assert (out.float() - ref).abs().max() <= 0.05 * ref.abs().max()
