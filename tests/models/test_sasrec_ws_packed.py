"""SASRecWS's packed encoder (``encoder_backend``) is the same model as RecBole's SASRec: the same
parameters and state_dict keys, RecBole's SASRec weights loading, the same outputs in eval and the
same loss and gradients in training (float64), prediction untouched."""
import pytest
import torch
from recbole.data.interaction import Interaction

from conftest import build_model
from helpers import assert_close

TIGHT = dict(rtol=1e-10, atol=1e-12)
L = 7
SEQS = [[3], [1, 2, 3, 4, 5, 6, 7], [5, 6, 7], [9, 8, 7, 6, 5], [30], [2, 4]]  # length 1, odd, full


def _batch():
    item_seq = torch.zeros(len(SEQS), L, dtype=torch.long)
    for i, s in enumerate(SEQS):
        item_seq[i, : len(s)] = torch.tensor(s)
    return Interaction({"item_id_list": item_seq, "item_length": torch.tensor([len(s) for s in SEQS]),
                        "item_id": torch.tensor([6, 9, 11, 2, 1, 3])})


def _model(backend, **overrides):
    if backend is not None:  # None: the YAML's value
        overrides["encoder_backend"] = backend
    return build_model("SASRecWS", n_items=31, MAX_ITEM_LIST_LENGTH=L, **overrides).double()


def test_same_parameters_and_recbole_checkpoint_loads():
    plain, packed = _model("plain"), _model("packed")
    recbole_sasrec = build_model("SASRec", n_items=31, MAX_ITEM_LIST_LENGTH=L).double()
    assert list(packed.state_dict()) == list(plain.state_dict()) == list(recbole_sasrec.state_dict())
    packed.load_state_dict(recbole_sasrec.state_dict())  # strict
    packed.eval(), recbole_sasrec.eval()
    batch = _batch()
    seq, lens = batch["item_id_list"], batch["item_length"]
    with torch.no_grad():
        ref = recbole_sasrec.forward(seq, lens)  # RecBole's own forward, RecBole's class
        got = packed.gather_indexes(packed.encode(seq), lens - 1)
        assert packed.uses_packed_encoder(seq.device)
        assert_close("last position vs RecBole SASRec.forward", ref, got, **TIGHT)
        # every real position, against the plain path of the same weights
        hidden_ref = recbole_sasrec.trm_encoder(
            recbole_sasrec.dropout(recbole_sasrec.LayerNorm(recbole_sasrec.item_embedding(seq)
                                                            + recbole_sasrec.position_embedding.weight[:L])),
            recbole_sasrec.get_attention_mask(seq))[-1]
        assert_close("all real positions", hidden_ref[seq != 0], packed.encode(seq)[seq != 0], **TIGHT)
        # prediction is RecBole's path whatever the encoder backend
        assert_close("full_sort_predict", recbole_sasrec.full_sort_predict(batch), packed.full_sort_predict(batch),
                     rtol=0, atol=0)


def _loss_and_grads(model, weights):
    model.load_state_dict(weights)
    model.train()
    torch.manual_seed(1)  # BPR's negatives: the same draws on both paths
    loss = model.calculate_loss(_batch())
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("mode,loss_type", [("whole_sequence", "CE"), ("whole_sequence", "BPR"), ("prefix", "CE")])
def test_training_loss_and_gradients_equal_plain(mode, loss_type):
    cfg = dict(hidden_dropout_prob=0.0, attn_dropout_prob=0.0, train_mode=mode, loss_type=loss_type,
               ce_backend="reference")
    plain, packed = _model("plain", **cfg), _model("packed", **cfg)
    torch.manual_seed(0)
    weights = {k: torch.randn_like(v) * 0.2 for k, v in plain.state_dict().items()}  # LayerNorm, biases matter
    loss_ref, grads_ref = _loss_and_grads(plain, weights)
    loss, grads = _loss_and_grads(packed, weights)
    assert_close("loss", loss_ref, loss, **TIGHT)
    assert grads.keys() == grads_ref.keys()
    for key in grads:
        assert_close(f"grad {key}", grads_ref[key], grads[key], **TIGHT)


def test_dropout_training_is_finite_and_seeded():
    model = _model("packed", hidden_dropout_prob=0.5, attn_dropout_prob=0.5).train()
    losses = []
    for _ in range(2):
        torch.manual_seed(3)
        model.zero_grad()
        loss = model.calculate_loss(_batch())
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        losses.append(loss.item())
    assert losses[0] == losses[1]


def test_backend_key():
    assert _model(None).encoder_backend == "auto"  # the YAML's default
    auto = _model("auto")
    assert auto.uses_packed_encoder(torch.device("cpu")) and not auto.uses_packed_encoder(torch.device("cuda"))
    assert not _model("plain").uses_packed_encoder(torch.device("cpu"))
    with pytest.raises(ValueError, match="encoder_backend"):
        _model("fused")
