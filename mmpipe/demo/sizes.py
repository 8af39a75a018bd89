"""The demo's sizes: the full demo (`mmpipe demo`) and a quick one (`mmpipe demo --quick`), which the
test suite runs to check the demo's logic and its headline claims at the smallest size that shows them."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class DemoSize:
    """How much data the demo writes and how long it trains."""

    pool: int = 800  # candidate pairs in the synthetic shapes pool (about 20% with mismatched captions)
    seed_pairs: int = 1500  # trusted pairs the bootstrapped filter trains and calibrates on
    holdout: int = 200  # trusted pairs no training saw: the sweep's evaluation set
    filter_steps: int = 300  # training steps of the CLIP filter (batch 128)
    model_steps: int = 150  # training steps of each of the three model families
    sweep_samples: int = 9600  # samples seen by each sweep setting's training (batch 64)

    def shapes_kwargs(self) -> dict:
        """The arguments of `write_shapes` for this size."""
        return {"n": self.pool, "n_seed": self.seed_pairs, "n_holdout": self.holdout}

    def as_dict(self) -> dict:
        """The size as a plain dict (a flow parameter)."""
        return asdict(self)


FULL = DemoSize()
# The quick size keeps the data, the filter (the sweep choice's precision and recall >= 0.9 on the planted
# mismatches were measured at this size, bench/RESULTS.md) and the three families' steps, and trains each
# sweep setting on a third of the samples (filtering beats none at 3,200 samples seen in
# tests/flows/test_filter_flow.py too). A smaller filter is the next saving; it needs runs that show the
# claim still holds.
QUICK = DemoSize(sweep_samples=3200)
