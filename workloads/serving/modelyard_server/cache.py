"""The embedding cache of the model owner, shared by every front.

A text's vector depends only on the model version and the token ids the text becomes: the tokenizer has
already normalised it (lower-casing, accents, whitespace and control characters, as the model's own
`tokenizer.json` says) and cut it to the model's `max_seq_length`. So the key is a 128-bit BLAKE2b digest
of a row's token ids, and the process is the version: the owner serves one model directory and the cache
dies with it. Two texts that differ only in what the tokenizer normalises away share one entry, and get the
one vector the model would give them both.

Bounded in bytes, and never more: the rows live in one float32 matrix sized once from the byte budget
(each entry also counted for its key and the dictionary slot that holds it), evicted least recently used.
A hit answers the exact float32 row the model computed for the first request, so a repeated text's answer
is byte-identical to the first one's. Only the owner's loop thread reads or writes it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

#: Bytes an entry costs beyond its row: the 16-byte key as a Python bytes object (49 bytes), the index as
#: an int (28), and the ordered dictionary's share of a slot and its links (about 100), rounded up.
ENTRY_OVERHEAD = 192


def key(ids: np.ndarray) -> bytes:
    """The cache key of one row of token ids (int32)."""
    return hashlib.blake2b(ids.tobytes(), digest_size=16).digest()


class EmbeddingCache:
    def __init__(self, max_bytes: int, dimensions: int):
        self.entry_bytes = dimensions * 4 + ENTRY_OVERHEAD
        self.capacity = max_bytes // self.entry_bytes
        if self.capacity < 1:
            raise ValueError(f"{max_bytes} bytes cannot hold one {dimensions}-dimension row ({self.entry_bytes} bytes)")
        self.rows = np.empty((self.capacity, dimensions), np.float32)  # touched (resident) only as it fills
        self.index: OrderedDict[bytes, int] = OrderedDict()
        self.free = list(range(self.capacity - 1, -1, -1))

    @property
    def held_bytes(self) -> int:
        """What the entries held now cost, by the accounting above."""
        return len(self.index) * self.entry_bytes

    def fill(self, keys: list[bytes], out: np.ndarray) -> list[int]:
        """Copies the row of every key held into `out` (row i for keys[i]); the indices of the keys not held."""
        index = self.index
        misses = []
        for i, k in enumerate(keys):
            at = index.get(k)
            if at is None:
                misses.append(i)
            else:
                index.move_to_end(k)
                out[i] = self.rows[at]
        return misses

    def put(self, keys: list[bytes], vectors: np.ndarray) -> None:
        """Holds vectors[i] under keys[i], evicting the least recently used entries beyond capacity."""
        index = self.index
        for k, row in zip(keys, vectors, strict=True):
            at = index.get(k)
            if at is None:
                if self.free:
                    at = self.free.pop()
                else:
                    _, at = index.popitem(last=False)
                index[k] = at
            else:
                index.move_to_end(k)
            self.rows[at] = row
