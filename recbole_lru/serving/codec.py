"""A user's served state as bytes: a fixed 12-byte header, then the raw little-endian leaves.

Header: ``b"RLST"``, format version (u8), element type code (u8), number of leaves (u16), payload
size in bytes (u32), all little-endian. The payload is every leaf's row, in a fixed order, as
plain little-endian numbers: no pickle, nothing to interpret but sizes. A blob is accepted only if
its header is exactly the one this model writes and its length matches, so a state written by
another model, another precision or a damaged store is one :class:`StateFormatError`, never a
silently misread tensor.
"""
from __future__ import annotations

import struct

import numpy as np
import torch

from .stores import StoreError

__all__ = ["StateCodec", "StateFormatError"]

_MAGIC, _VERSION = b"RLST", 1
_HEADER = struct.Struct("<4sBBHI")
# numpy type of each torch type a state may hold, always little-endian
_TYPES = {torch.float32: ("<f4", 1), torch.float64: ("<f8", 2), torch.int64: ("<i8", 3)}
_NAMES = {code: np.dtype(t).name for t, code in _TYPES.values()}


class StateFormatError(StoreError):
    """A stored state that this bundle cannot read (other model, other precision, damaged)."""


class StateCodec:
    """Packs and unpacks rows of leaves ``[(shape, torch dtype), ...]`` (shape without the batch
    dimension); ``dtype`` (the model's precision) is recorded in the header."""

    def __init__(self, layout: list[tuple[torch.Size, torch.dtype]], dtype: torch.dtype):
        unsupported = [dt for _, dt in layout if dt not in _TYPES] + ([dtype] if dtype not in _TYPES else [])
        if unsupported:
            raise TypeError(f"states of type {unsupported[0]} cannot be stored (supported: {list(_TYPES)})")
        self.layout = [(tuple(shape), np.dtype(_TYPES[dt][0]), dt) for shape, dt in layout]
        self.sizes = [int(np.prod(shape)) * npt.itemsize for shape, npt, _ in self.layout]
        self.payload_bytes = sum(self.sizes)
        self.header = _HEADER.pack(_MAGIC, _VERSION, _TYPES[dtype][1], len(layout), self.payload_bytes)
        self.state_bytes = _HEADER.size + self.payload_bytes
        self._header_row = np.frombuffer(self.header, dtype=np.uint8)

    def pack(self, leaves: list[torch.Tensor]) -> list[bytes]:
        """Batched leaves (B, *shape) -> B blobs of ``state_bytes``."""
        B = leaves[0].shape[0]
        rows = np.empty((B, self.state_bytes), dtype=np.uint8)
        rows[:, : _HEADER.size] = self._header_row
        offset = _HEADER.size
        for t, (_, npt, _), size in zip(leaves, self.layout, self.sizes):
            arr = t.detach().cpu().numpy().astype(npt, copy=False)  # a no-op on little-endian hosts
            rows[:, offset:offset + size] = arr.reshape(B, -1).view(np.uint8)
            offset += size
        return [r.tobytes() for r in rows]

    def unpack(self, blobs: list[bytes]) -> list[torch.Tensor]:
        """Inverse of :meth:`pack`; the first blob that is not this model's raises."""
        for b in blobs:
            if len(b) != self.state_bytes or b[: _HEADER.size] != self.header:
                raise StateFormatError(self._describe(b))
        B = len(blobs)
        rows = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(B, self.state_bytes)
        leaves, offset = [], _HEADER.size
        for (shape, npt, dt), size in zip(self.layout, self.sizes):
            chunk = rows[:, offset:offset + size]
            arr = chunk.copy().view(npt).reshape(B, *shape)  # a copy: fresh, aligned, compact strides
            leaves.append(torch.from_numpy(arr.astype(npt.newbyteorder("="), copy=False)))
            offset += size
        return leaves

    def _describe(self, blob: bytes) -> str:
        want = (f"this bundle's states are {self.state_bytes} bytes ({_NAMES[self.header[5]]}, "
                f"{len(self.layout)} leaves, {self.payload_bytes} payload bytes)")
        if len(blob) >= _HEADER.size:
            magic, version, code, n, size = _HEADER.unpack(blob[: _HEADER.size])
            if blob[: _HEADER.size] == self.header:
                return f"a stored state of {len(blob)} bytes has this model's header but the wrong length (damaged); {want}"
            if magic == _MAGIC:
                got = (f"a stored state of {len(blob)} bytes holds {_NAMES.get(code, f'type code {code}')}, "
                       f"{n} leaves, {size} payload bytes (format {version})")
                return f"{got}; {want}: the store was written by another model or precision"
        return f"a stored state of {len(blob)} bytes is not a recbole_lru state; {want}"
