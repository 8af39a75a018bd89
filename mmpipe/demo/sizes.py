"""The demo's sizes: the full demo (`mmpipe demo`) and a quick one (`mmpipe demo --quick`), which the
test suite runs to check the demo's logic and its headline claims at the smallest size that shows them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mmpipe.models.names import TINY_CLIP


@dataclass(frozen=True)
class DemoSize:
    """How much data the demo writes and how long it trains."""

    pool: int = 800  # candidate pairs in the synthetic shapes pool (about 20% with mismatched captions)
    seed_pairs: int = 1500  # trusted pairs the bootstrapped filter trains and calibrates on
    holdout: int = 200  # trusted pairs no training saw: the sweep's evaluation set
    filter_steps: int = 300  # training steps of the CLIP filter (batch 128)
    filter_model: str = TINY_CLIP  # the CLIP filter's architecture (a config shipped in mmpipe/models/configs)
    model_steps: int = 150  # training steps of each of the three model families
    sweep_samples: int = 9600  # samples seen by each sweep setting's training (batch 64)
    speech_steps: int = 150  # training steps of each speech objective (`mmpipe demo --speech`)
    speech_sweep_samples: int = 1600  # samples seen by each speech sweep student (batch 16)
    speech_good_clips: int | None = None  # the good clips of the speech set used (None: all 270; the 30 bad always)

    def shapes_kwargs(self) -> dict:
        """The arguments of `write_shapes` for this size."""
        return {"n": self.pool, "n_seed": self.seed_pairs, "n_holdout": self.holdout}

    def as_dict(self) -> dict:
        """The size as a plain dict (a flow parameter)."""
        return asdict(self)


FULL = DemoSize()
# The quick size checks the demo's logic, not its figures: every stage, the sweep, the three objectives and
# the report run on a few hundred pairs for a few steps, and the test suite checks every number it prints
# against the warehouse (tests/demo/test_demo.py). What the figures show is proved at the demo's own data
# and filter size elsewhere: the filter and the sweep's choice in tests/flows/test_filter_flow.py (CLAIMS),
# each model family in tests/mmpipe/test_train_*.py.
QUICK = DemoSize(pool=240, seed_pairs=300, holdout=60, filter_steps=20, model_steps=6, sweep_samples=640,
                 speech_steps=4, speech_sweep_samples=64, speech_good_clips=90)
# The size at which the demo's claims about filtering are tested: the full demo's data, the filter the micro
# config (32 px; its 300 steps cost 34 CPU-s against the tiny filter's 80 for 200), each sweep setting a tiny
# CLIP trained on a third of the samples. Filtering still beats none (mean R@5 0.327 against 0.276) and the
# chosen threshold caught the planted mismatches with precision 0.944 and recall 0.927 (the tiny filter at 200
# steps: 0.98 and 0.93). The micro filter at 200 steps reached recall 0.89 only; micro sweep models needed
# three times the samples to show filtering winning.
CLAIMS = DemoSize(filter_steps=300, filter_model="mmpipe-micro-clip", sweep_samples=3200)
