"""Errors of model loading that callers catch without importing torch (the command line names them)."""

from __future__ import annotations


class ClipWeightsUnavailable(RuntimeError):
    """The requested CLIP weights cannot be had (e.g. no network for a hub tag)."""
