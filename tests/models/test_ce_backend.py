"""``ce_backend``: every whole-sequence model's loss and every parameter gradient are the same
through the fused catalogue op and the plain path (float64), in both training regimes."""
import pytest
import torch
from recbole.data.interaction import Interaction

from conftest import build_model

MODELS = {
    "LRURec": {},
    "SASRecWS": {},
    "LinRec": {"causal": True},
}


def _batch(seqs, L, targets):
    item_seq = torch.zeros(len(seqs), L, dtype=torch.long)
    for i, s in enumerate(seqs):
        item_seq[i, : len(s)] = torch.tensor(s)
    return Interaction({"item_id_list": item_seq, "item_length": torch.tensor([len(s) for s in seqs]),
                        "item_id": torch.tensor(targets)})


def _loss_and_grads(name, backend, mode):
    torch.manual_seed(0)
    model = build_model(name, n_items=31, hidden_dropout_prob=0.0, attn_dropout_prob=0.0, train_mode=mode,
                        MAX_ITEM_LIST_LENGTH=6, ce_backend=backend, **MODELS[name]).double()
    batch = _batch([[3, 4, 5], [7], [1, 2, 3, 4, 5, 6], [9, 8, 7, 6, 5]], 6, [6, 9, 11, 2])
    loss = model.calculate_loss(batch)
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("mode", ["whole_sequence", "prefix"])
@pytest.mark.parametrize("name", list(MODELS))
def test_chunked_equals_reference(name, mode):
    loss_ref, grads_ref = _loss_and_grads(name, "reference", mode)
    loss, grads = _loss_and_grads(name, "chunked", mode)
    assert torch.allclose(loss, loss_ref, rtol=1e-10, atol=1e-12), (loss, loss_ref)
    assert grads.keys() == grads_ref.keys()
    for key in grads:
        assert torch.allclose(grads[key], grads_ref[key], rtol=1e-9, atol=1e-12), key


def test_auto_is_chunked_on_cpu_and_bad_values_fail():
    assert build_model("LRURec", n_items=31).ce_backend == "auto"
    with pytest.raises(ValueError, match="valid values"):
        build_model("SASRecWS", n_items=31, ce_backend="fused")
