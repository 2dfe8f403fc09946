"""Bounded LRU cache of SAM 2 image features, one entry per camera frame.

The image encoder is by far the most expensive part of SAM 2. A camera frame is
encoded once (when it is first tracked or queried) and every later query, ``<SEG>``
and tracking step on the same frame reuses the features. Entries are keyed by a
caller-given hashable (e.g. ``(camera, stamp_ns)``); the caller guarantees a key
always names the same image.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable

import torch


class CacheCapacityError(ValueError):
    """A cache that could hold no frame at all."""


@dataclass(frozen=True)
class FrameFeatures:
    """What SAM 2 needs of one encoded frame (batch 1, on the model's device).

    Only the top-level positional encoding is kept: the lower levels' encodings are
    used by nothing downstream of the image encoder, and at 768 px the stride-4 one
    alone is larger than all features kept here together.
    """

    image_embed: torch.Tensor  # [1, C, h, w] top-level features (stride 16)
    image_pos: torch.Tensor    # [1, C, h, w] their positional encoding
    feat_s0: torch.Tensor      # [1, C/8, 4h, 4w] high-resolution features (stride 4)
    feat_s1: torch.Tensor      # [1, C/4, 2h, 2w] high-resolution features (stride 8)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size()
                   for t in (self.image_embed, self.image_pos, self.feat_s0, self.feat_s1))


class FeatureCache:
    """Least-recently-used map from frame key to ``FrameFeatures``; thread-safe."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise CacheCapacityError(f"feature cache capacity must be >= 1 frame, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[Hashable, FrameFeatures] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> FrameFeatures | None:
        """The features of ``key`` (now the most recently used), or None."""
        with self._lock:
            features = self._entries.get(key)
            if features is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return features

    def put(self, key: Hashable, features: FrameFeatures) -> None:
        """Store ``features`` under ``key``, evicting the least recently used beyond capacity."""
        with self._lock:
            self._entries[key] = features
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def keys(self) -> list[Hashable]:
        """Keys from least to most recently used."""
        with self._lock:
            return list(self._entries)

    def nbytes(self) -> int:
        with self._lock:
            return sum(f.nbytes() for f in self._entries.values())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
