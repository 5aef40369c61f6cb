"""Helpers shared by the op and layer tests."""
import torch

# (rtol, atol) by dtype, for a result computed in that precision
TOL = {
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (5e-2, 5e-2),
    torch.float32: (1e-4, 1e-5),
    torch.complex64: (1e-4, 1e-5),
    torch.float64: (1e-9, 1e-9),
    torch.complex128: (1e-9, 1e-9),
}


def assert_close(name, ref, got, tol=None, *, rtol=None, atol=None):
    """``|got - ref| <= atol + rtol * |ref|`` elementwise; on failure, report the max absolute and the
    relative error (max error over max |ref|) and how many elements are off.

    ``tol`` sets both rtol and atol; by default both come from ``TOL`` for ref's dtype. Shapes and
    dtypes must match exactly.
    """
    assert got.shape == ref.shape, f"{name}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
    assert got.dtype == ref.dtype, f"{name}: dtype {got.dtype} != {ref.dtype}"
    if tol is not None:
        rtol = tol if rtol is None else rtol
        atol = tol if atol is None else atol
    default_rtol, default_atol = TOL.get(ref.dtype, TOL[torch.float32])
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    if ref.numel() == 0:
        return
    ref, got = ref.detach(), got.detach()
    err = (got - ref).abs()
    bad = ~(err <= atol + rtol * ref.abs())  # NaN counts as off
    if bad.any():
        max_err = err.max().item()
        rel = max_err / max(ref.abs().max().item(), 1e-30)
        raise AssertionError(f"{name}: max abs err {max_err:.3e}, rel err {rel:.3e}, "
                             f"{int(bad.sum())} of {bad.numel()} elements off (rtol {rtol:.0e}, atol {atol:.0e})")
