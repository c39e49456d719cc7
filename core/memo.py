"""``LRUCache``: the one in-process cache of compute, bounded and thread-safe.

What lives in one (README "How it works: caches"): loaded models and their truncated copies
(``checkpoints.MODELS``), parsed datasets (``datasets``), file and folder content hashes keyed by size and
mtime (so a changed file is never served stale), and the Demo's corpus indexes and pasted-corpus
embeddings. Embeddings of datasets live on disk (``submodels.EmbeddingCache``); the pages cache their
reads with ``st.cache_data`` / ``st.cache_resource``.

>>> cache = LRUCache(2)
>>> cache.get_or_build("a", lambda: 1), cache.get_or_build("b", lambda: 2), cache.get_or_build("c", lambda: 3)
(1, 2, 3)
>>> "a" in cache, len(cache)
(False, 2)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LRUCache(Generic[V]):
    """A least-recently-used map of at most ``size`` values, each built once per key under a lock."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"an LRU cache holds at least one value, got size {size}")
        self.size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.RLock()

    def get_or_build(self, key: Hashable, build: Callable[[], V]) -> V:
        """The value of ``key``, built by ``build()`` (under the lock: concurrent callers build once)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            value = build()
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return value

    def get(self, key: Hashable) -> V | None:
        """The value of ``key`` (marked as recently used), or None."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: V) -> None:
        """Store ``value`` under ``key``, evicting the least recently used beyond ``size``."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._items.clear()

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
