"""step() takes only a state of its own kind: another model's, another width, batch, dtype or a
real tensor where a complex one belongs is one clear error (it used to be stepped silently)."""
import pytest
import torch

from conftest import build_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    lru = build_model("LRURec", n_items=30).eval()
    lin = build_model("LinRec", n_items=30, causal=True).eval()
    wide = build_model("LRURec", n_items=30, hidden_size=8).eval()
    return lru, lin, wide


IDS = torch.tensor([1, 2])


def _lru_cases(lru, lin, wide):
    good = lru.init_state(2)
    return {
        "linrec_state": (TypeError, "LinRec's state is a dict", lin.init_state(2)),
        "not_a_list": (TypeError, "list of 2 complex tensors", good[0]),
        "wrong_batch": (ValueError, r"steps \(2, 32\) \(B, N\)", lru.init_state(3)),
        "real_not_complex": (ValueError, "torch.float32 tensor", [h.real.contiguous() for h in good]),
        "wrong_width": (ValueError, r"is a \(2, 16\)", wide.init_state(2)),
        "double": (ValueError, "complex128", [h.to(torch.complex128) for h in good]),
        "too_few": (ValueError, "one per block", good[:1]),
        "numbers": (TypeError, "list of 2 complex tensors", [0, 0]),
    }


def _lin_cases(lru, lin):
    good = lin.init_state(2)
    return {
        "lrurec_state": (TypeError, "LRURec's state is a list", lru.init_state(2)),
        "missing_key": (TypeError, "'kv'", {"kv": good["kv"]}),
        "wrong_batch": (ValueError, r"state\['kv'\]\[0\] is a \(3, 2, 8, 8\)", lin.init_state(3)),
        "wrong_dtype": (ValueError, "float64", {**good, "kv": [k.double() for k in good["kv"]]}),
        "length_dtype": (ValueError, r"state\['length'\]", {**good, "length": good["length"].float()}),
        "too_few": (ValueError, "one per layer", {**good, "kv": good["kv"][:1]}),
    }


@pytest.mark.parametrize("case", ["linrec_state", "not_a_list", "wrong_batch", "real_not_complex", "wrong_width",
                                  "double", "too_few", "numbers"])
def test_lrurec_step_rejects_foreign_states(case, models):
    lru, lin, wide = models
    err, match, state = _lru_cases(lru, lin, wide)[case]
    with pytest.raises(err, match=match):
        lru.step(IDS, state)


@pytest.mark.parametrize("case", ["lrurec_state", "missing_key", "wrong_batch", "wrong_dtype", "length_dtype", "too_few"])
def test_linrec_step_rejects_foreign_states(case, models):
    lru, lin, _ = models
    err, match, state = _lin_cases(lru, lin)[case]
    with pytest.raises(err, match=match):
        lin.step(IDS, state)


@pytest.mark.parametrize("index", [0, 1])
def test_item_ids_must_be_one_per_user(index, models):
    model = models[index]
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        model.step(torch.tensor([[1, 2]]), model.init_state(1))


@pytest.mark.parametrize("index", [0, 1])
def test_own_states_still_step(index, models):
    model = models[index]
    state = model.init_state(2)
    for _ in range(3):
        scores, state = model.step(IDS, state)
    assert scores.shape == (2, 30) and torch.isfinite(scores).all()
    history = model.encode_history(torch.tensor([[1, 2, 0], [3, 0, 0]]), torch.tensor([2, 1]))
    assert model.step(IDS, history)[0].shape == (2, 30)
