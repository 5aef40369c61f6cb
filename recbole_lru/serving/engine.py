"""The model side of serving: advance per-user states by one item, encode whole histories, and
turn each user's state into a fixed-size byte string for a store.

A served user is ``(hidden, state)``: ``state`` is the model's recurrent state (what ``step``
carries) and ``hidden`` the model's output after the user's last item, (D,). ``recommend`` needs
``hidden``: the model output at the last position also depends on the last input item (the
residual path), so it is not a function of the recurrent state alone and is kept beside it.
Both have a size fixed by the model, whatever the history length.
"""
from __future__ import annotations

import torch

from .bundle import Bundle
from .codec import StateCodec
from .fast_step import LRUStepper
from .scoring import Scorer

__all__ = ["Engine", "make_engine"]


class Engine:
    """Shared part: the scorer, the empty-history output and the byte layout of a user's state."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.model = bundle.model
        self.n_items = bundle.n_items
        self.dtype = self.model.item_embedding.weight.dtype
        self.hidden_size = self.model.item_embedding.weight.shape[1]
        with torch.inference_mode():
            self.scorer = Scorer.for_model(self.model, self._empty_scores())
            template = self.flatten(self.init_state(1))
        # one user: hidden (D,) then every state leaf's row, in flatten order
        self.codec = StateCodec([(torch.Size([self.hidden_size]), self.dtype)]
                                + [(t.shape[1:], t.dtype) for t in template], self.dtype)
        self.state_bytes = self.codec.state_bytes

    # ------------------------------------------------------------------ model-specific
    def flatten(self, state) -> list[torch.Tensor]:
        raise NotImplementedError

    def unflatten(self, leaves: list[torch.Tensor]):
        raise NotImplementedError

    def init_state(self, batch_size: int):
        raise NotImplementedError

    def advance(self, item_ids: torch.Tensor, state):
        """(B,) internal ids and a state -> (hidden (B, D), new state): one ``step`` without scoring."""
        raise NotImplementedError

    def encode(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor):
        """Right-padded whole histories (B, L), lengths (B,) >= 1 -> (hidden (B, D), state)."""
        raise NotImplementedError

    def _empty_scores(self) -> torch.Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, n_items), the model's output layer."""
        return self.scorer.scores(hidden)

    def pack(self, hidden: torch.Tensor, state) -> list[bytes]:
        """(B, D) outputs and a batched state -> B byte strings of ``state_bytes`` each."""
        return self.codec.pack([hidden] + self.flatten(state))

    def unpack(self, blobs: list[bytes]):
        """Inverse of :meth:`pack`; a blob of another model raises :class:`StateFormatError`."""
        leaves = self.codec.unpack(blobs)
        return leaves[0], self.unflatten(leaves[1:])

    def select(self, state, rows: torch.Tensor):
        return self.unflatten([t.index_select(0, rows) for t in self.flatten(state)])

    def put(self, state, rows: torch.Tensor, part):
        """``state`` with ``rows`` replaced by ``part`` (a new state; the input is not modified)."""
        return self.unflatten([t.index_copy(0, rows, p) for t, p in zip(self.flatten(state), self.flatten(part))])


class LRURecEngine(Engine):
    """State: one real (2N,) vector per block, the (re, im) pairs of the model's complex (N,)
    state, advanced by the precomputed :class:`~.fast_step.LRUStepper`."""

    def __init__(self, bundle: Bundle):
        self.stepper = LRUStepper(bundle.model)
        super().__init__(bundle)

    def flatten(self, state):
        return list(state)

    def unflatten(self, leaves):
        return list(leaves)

    def init_state(self, batch_size):
        return self.stepper.init_state(batch_size)

    def advance(self, item_ids, state):
        return self.stepper(item_ids, state)

    def encode(self, item_seq, item_seq_len):
        # the scan has no length limit: histories longer than MAX_ITEM_LIST_LENGTH are encoded whole
        hidden, states = self.model.encode(item_seq, item_seq_len)
        last = (item_seq_len.long() - 1).view(-1, 1, 1)
        out = hidden.gather(1, last.expand(-1, 1, hidden.shape[-1])).squeeze(1)
        state = [h.gather(1, last.expand(-1, 1, h.shape[-1])).squeeze(1) for h in states]
        return out, LRUStepper.to_real(state)

    def _empty_scores(self):
        # the learned start-of-history output (trained by first_item_target)
        return self.model.score_all(self.model.encode_empty(1))[0]


class LinRecEngine(Engine):
    """State: per layer the running sum of k v^T per head, and the number of items seen."""

    def flatten(self, state):
        return [*state["kv"], state["length"]]

    def unflatten(self, leaves):
        return {"kv": list(leaves[:-1]), "length": leaves[-1]}

    def init_state(self, batch_size):
        return self.model.init_state(batch_size)

    def advance(self, item_ids, state):
        return self.model._advance(item_ids, state)

    def encode(self, item_seq, item_seq_len):
        state = self.init_state(item_seq.shape[0])
        hidden = torch.zeros(item_seq.shape[0], self.model.hidden_size, dtype=self.dtype)
        for t in range(item_seq.shape[1]):
            real = item_seq[:, t] > 0
            x, state = self.model._advance(item_seq[:, t], state, real)
            hidden = torch.where(real.unsqueeze(1), x, hidden)
        return hidden, state

    def _empty_scores(self):
        # LinRec has no learned empty-history output: rank by training popularity
        counts = torch.tensor(self.bundle.popularity, dtype=self.dtype)
        return torch.log1p(counts)


def make_engine(bundle: Bundle) -> Engine:
    return {"LRURec": LRURecEngine, "LinRec": LinRecEngine}[bundle.model_name](bundle)
