"""One per-process cache for loaded models: a model is loaded once per process and key."""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

T = TypeVar("T")

_models: dict[tuple, object] = {}
_lock = threading.Lock()


def cached(key: tuple, load: Callable[[], T]) -> T:
    """The object cached under `key`, loading it with `load()` the first time (thread-safe)."""
    with _lock:
        if key not in _models:
            _models[key] = load()
        return _models[key]  # type: ignore[return-value]


def clear() -> None:
    """Forget every loaded model (tests, or to free memory between flows)."""
    with _lock:
        _models.clear()
