"""The channel between a front process and the model owner: shared memory for the data, a
SOCK_SEQPACKET socket pair for the notifications.

Each front owns one shared-memory block cut into `slots`. To run a batch it writes the token ids
(ragged, int32) and row lengths into a free slot and sends a 16-byte JOB message naming the slot; the
model owner reads the ids straight from that memory, runs the forward pass, writes the float32
vectors into the same slot's output area and answers DONE (or FAILED). No payload is pickled or
copied through a pipe: the only copies are the ones numpy makes into the batch's layout.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

MESSAGE = struct.Struct("<IIII")  # kind, slot, texts, tokens
JOB, DONE, FAILED, READY = 1, 2, 3, 4


@dataclass(frozen=True)
class Layout:
    """Where each slot's arrays live in a front's block (all offsets in bytes, 64-byte aligned)."""

    slots: int
    max_texts: int
    max_tokens: int
    dimensions: int

    @staticmethod
    def _align(n: int) -> int:
        return (n + 63) // 64 * 64

    @property
    def ids_bytes(self) -> int:
        return self._align(self.max_tokens * 4)

    @property
    def lengths_bytes(self) -> int:
        return self._align(self.max_texts * 4)

    @property
    def out_bytes(self) -> int:
        return self._align(self.max_texts * self.dimensions * 4)

    @property
    def slot_bytes(self) -> int:
        return self.ids_bytes + self.lengths_bytes + self.out_bytes

    @property
    def size(self) -> int:
        return self.slots * self.slot_bytes


class SlotBlock:
    """numpy views on one front's shared-memory block."""

    def __init__(self, layout: Layout, name: str | None = None):
        self.layout = layout
        if name is None:
            self.shm = shared_memory.SharedMemory(create=True, size=layout.size)
        else:
            self.shm = shared_memory.SharedMemory(name=name)
        self.ids, self.lengths, self.out = [], [], []
        for s in range(layout.slots):
            base = s * layout.slot_bytes
            self.ids.append(np.ndarray((layout.max_tokens,), np.int32, self.shm.buf, base))
            base += layout.ids_bytes
            self.lengths.append(np.ndarray((layout.max_texts,), np.int32, self.shm.buf, base))
            base += layout.lengths_bytes
            self.out.append(np.ndarray((layout.max_texts, layout.dimensions), np.float32, self.shm.buf, base))

    @property
    def name(self) -> str:
        return self.shm.name

    def close(self) -> None:
        self.ids, self.lengths, self.out = [], [], []
        self.shm.close()

    def unlink(self) -> None:
        self.shm.unlink()


class OwnerLoad:
    """What the model owner publishes to every front, in a few bytes of shared memory: the texts it holds (jobs
    received and not yet answered, from every front) and the pace it answers them at (texts a second, NaN until
    measured; dispatch.Pace). A front admitting by the latency objective reads both: the texts ahead of a new
    request are the owner's plus the front's own still waiting, and the owner's pace, not a front's share of it,
    is how fast they go. Written by the owner's loop thread only; a reader may see a value a job old."""

    def __init__(self, name: str | None = None):
        self.shm = shared_memory.SharedMemory(create=name is None, size=16, name=name)
        self.values = np.ndarray((2,), np.float64, self.shm.buf)
        if name is None:
            self.values[:] = (0.0, np.nan)

    @property
    def name(self) -> str:
        return self.shm.name

    @property
    def texts(self) -> int:
        return int(self.values[0])

    @property
    def pace(self) -> float | None:
        value = float(self.values[1])
        return None if value != value else value

    def publish(self, texts: int, pace: float | None) -> None:
        self.values[0] = texts
        self.values[1] = np.nan if pace is None else pace

    def close(self) -> None:
        del self.values
        self.shm.close()

    def unlink(self) -> None:
        self.shm.unlink()
