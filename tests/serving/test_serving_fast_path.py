"""The serving fast path against the model's own code: the precomputed LRURec step against
``LRURec.step`` (float64 and float32, batch 1 and odd batches), the shared scorer against
``score_all`` + masking, and the state bytes (header, validation on read)."""
import numpy as np
import pytest
import torch

from serving_fixtures import bundle_dir

from recbole_lru.serving import StateFormatError, StoreError, load_bundle
from recbole_lru.serving.codec import StateCodec
from recbole_lru.serving.fast_step import LRUStepper
from recbole_lru.serving.scoring import Scorer, block_top_k

TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-5}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch", [1, 3, 7])
def test_fast_step_equals_model_step(dtype, batch):
    net = load_bundle(bundle_dir("LRURec"), dtype=dtype).model
    stepper = LRUStepper(net)
    gen = torch.Generator().manual_seed(batch)
    fast, ref = stepper.init_state(batch), net.init_state(batch)
    with torch.inference_mode():
        for _ in range(6):  # several steps: the state error must not grow
            ids = torch.randint(1, net.n_items, (batch,), generator=gen)
            hidden, fast = stepper(ids, fast)
            scores, ref = net.step(ids, ref)
            tol = TOLERANCE[dtype]
            assert torch.allclose(net.score_all(hidden), scores, rtol=0, atol=tol * 10)
            for f, r in zip(fast, ref):
                assert f.dtype == dtype and f.shape == (batch, 2 * net.state_size)
                assert torch.allclose(f, LRUStepper.to_real([r])[0], rtol=0, atol=tol)
        assert all(torch.equal(c, r) for c, r in zip(LRUStepper.to_complex(fast), [torch.view_as_complex(
            f.unflatten(-1, (-1, 2))) for f in fast]))


def test_fast_step_starts_from_encoded_histories():
    net = load_bundle(bundle_dir("LRURec"), dtype=torch.float64).model
    stepper = LRUStepper(net)
    seq = torch.tensor([[4, 9, 2, 0], [5, 6, 7, 8]])
    lens = torch.tensor([3, 4])
    with torch.inference_mode():
        state = LRUStepper.to_real(net.encode_history(seq, lens))
        _, stepped = stepper(torch.tensor([3, 3]), state)
        longer = torch.tensor([[4, 9, 2, 3, 0], [5, 6, 7, 8, 3]])
        expected = LRUStepper.to_real(net.encode_history(longer, lens + 1))
    assert all(torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(stepped, expected))


def test_scorer_equals_score_all_with_masking():
    net = load_bundle(bundle_dir("LRURec"), dtype=torch.float64).model
    empty = torch.arange(net.n_items, dtype=torch.float64)
    scorer = Scorer.for_model(net, empty)
    hidden = torch.randn(2, net.hidden_size, dtype=torch.float64)
    with torch.inference_mode():
        scores = scorer.rows(3, [0, 2], hidden)
        assert torch.allclose(scores[[0, 2]], net.score_all(hidden), rtol=0, atol=1e-12)
        assert torch.equal(scores[1], empty)
        seen = [np.array([1, 5], dtype=np.int32), None, np.array([], dtype=np.int32)]
        top = scorer.top_k(scores, seen, net.n_items - 1)
    expected = net.score_all(hidden)[0].clone()
    expected[[0, 1, 5]] = float("-inf")
    assert top.indices[0].tolist()[:net.n_items - 3] == expected.topk(net.n_items - 3).indices.tolist()
    assert torch.isinf(top.values[0, -2:]).all() and torch.isfinite(top.values[2, :-1]).all()


@pytest.mark.parametrize("n,batch", [(1, 1), (5, 3), (64, 2), (65, 4), (129, 1), (1000, 7), (2048 + 17, 32)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("item_major", [False, True])
def test_block_top_k_equals_torch_topk(n, batch, dtype, item_major):
    gen = torch.Generator().manual_seed(n + batch)
    scores = torch.randn(n, batch, dtype=dtype, generator=gen).t()
    if not item_major:
        scores = scores.contiguous()
    scores[0, : n // 3] = float("-inf")  # a row with many masked items
    if batch > 2:
        scores[2] = float("-inf")  # a row with nothing left
    for k in sorted({1, min(3, n), min(10, n), n}):
        got = block_top_k(scores, k, block=8)
        ref = scores.topk(k, dim=1)
        assert torch.equal(got.values, ref.values)
        finite = torch.isfinite(ref.values)  # random scores: no ties among the finite ones
        assert torch.equal(got.indices[finite], ref.indices[finite])
        assert got.values.shape == got.indices.shape == (batch, k)


def test_block_top_k_with_ties_keeps_the_values():
    scores = torch.zeros(5, 300)
    scores[:, ::7] = 1.0  # many ties at the top and below
    scores[1, [3, 150, 299]] = 2.0
    got = block_top_k(scores, 12, block=8)
    assert torch.equal(got.values, scores.topk(12, dim=1).values)
    assert torch.equal(scores.gather(1, got.indices), got.values)  # the chosen items carry the values
    assert all(len(set(row)) == 12 for row in got.indices.tolist())


@pytest.mark.parametrize("batch", [1, 5, 40])  # row-major and item-major scoring
def test_scorer_layouts_agree_with_the_plain_product(batch):
    weight, bias = torch.randn(300, 4, dtype=torch.float64), torch.randn(300, dtype=torch.float64)
    scorer = Scorer(weight, bias, torch.zeros(300, dtype=torch.float64))
    hidden = torch.randn(batch, 4, dtype=torch.float64)
    expected = hidden @ weight.t() + bias
    scores = scorer.scores(hidden)
    assert torch.allclose(scores, expected, rtol=0, atol=1e-12)
    seen = [np.array([7, 8], dtype=np.int32)] + [None] * (batch - 1)
    top = scorer.top_k(scores, seen, 5)
    expected[:, 0] = float("-inf")
    expected[0, [7, 8]] = float("-inf")
    ref = expected.topk(5, dim=1)
    assert torch.allclose(top.values, ref.values, rtol=0, atol=1e-12) and torch.equal(top.indices, ref.indices)


def test_state_bytes_have_a_header_and_are_validated():
    codec = StateCodec([(torch.Size([4]), torch.float32), (torch.Size([2, 3]), torch.float32)], torch.float32)
    a, b = torch.randn(5, 4), torch.randn(5, 2, 3)
    blobs = codec.pack([a, b])
    assert len(blobs) == 5 and all(len(x) == codec.state_bytes == 12 + 4 * 10 for x in blobs)
    assert blobs[0][:4] == b"RLST" and blobs[0][12:28] == a[0].numpy().astype("<f4").tobytes()
    a2, b2 = codec.unpack(blobs)
    assert torch.equal(a2, a) and torch.equal(b2, b)
    double = StateCodec([(torch.Size([4]), torch.float64), (torch.Size([2, 3]), torch.float64)], torch.float64)
    with pytest.raises(StateFormatError, match=r"holds float64, 2 leaves, 80 payload bytes.*another model or "
                                               r"precision") as err:
        codec.unpack(double.pack([a.double(), b.double()]))
    assert isinstance(err.value, StoreError)
    with pytest.raises(StateFormatError, match=r"of 51 bytes has this model's header but the wrong length"):
        codec.unpack([blobs[0], blobs[1][:-1]])
    with pytest.raises(StateFormatError, match=r"of 3 bytes is not"):
        codec.unpack([b"abc"])


def test_masking_a_matrix_that_is_neither_layout():
    scorer = Scorer(torch.randn(300, 4, dtype=torch.float64), None, torch.zeros(300, dtype=torch.float64))
    scores = torch.randn(3, 600, dtype=torch.float64)[:, ::2]  # every other column: not dense
    expected = scores.clone()
    expected[:, 0] = float("-inf")
    expected[1, [4, 9]] = float("-inf")
    top = scorer.top_k(scores, [None, np.array([4, 9], dtype=np.int32), None], 6)
    ref = expected.topk(6, dim=1)
    assert torch.equal(scores, expected) and torch.equal(top.values, ref.values) and torch.equal(top.indices, ref.indices)
