"""Checkpoints are whole or absent: a kill at any point of saving one (between the step records and the
checkpoint, between its files, before or after the rename that makes it live) resumes to the weights of
an uninterrupted run, with every step recorded exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmpipe.train import loop
from mmpipe.train.recipes import train_contrastive
from mmpipe.train.synthetic import write_shape_shards

MODEL = "mmpipe-micro-clip"
OPTS = dict(batch_size=32, lr=2e-3, warmup_steps=2, weight_decay=0.05, progress=False, steps=8, checkpoint_every=3,
            shuffle_buffer=100)  # checkpoints at steps 3, 6 and 8
KILL_AT = 6


class Killed(Exception):
    pass


class Records:
    """Step records as the warehouse keeps them: a resumed run rewrites the steps from where it resumed."""

    def __init__(self, store: dict[int, float], kill: str | None = None):
        self.store, self.kill, self.first, self.pending = store, kill, True, {}

    def __call__(self, step: int, metrics: dict) -> None:
        if self.first:
            self.first = False
            for s in [s for s in self.store if s >= step]:
                del self.store[s]
        self.pending[step] = metrics["contrastive_loss"]

    def flush(self) -> None:
        self.store.update(self.pending)
        self.pending = {}
        if self.kill == "after_records" and max(self.store) == KILL_AT:
            raise Killed("after the records, before the checkpoint")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[str]:
    return write_shape_shards(tmp_path_factory.mktemp("ckpt-data"), 400, shard_size=200, side=32)


@pytest.fixture(scope="module")
def straight(shards, tmp_path_factory) -> dict:
    store: dict[int, float] = {}
    result = train_contrastive(shards, tmp_path_factory.mktemp("straight"), MODEL, on_step=Records(store), **OPTS)
    return {**result, "records": store}


def _kill_in(point: str, monkeypatch) -> None:
    """Raise at one point of saving the checkpoint of step KILL_AT."""
    real_save, real_publish, real_prune = torch.save, loop._publish, loop._prune

    def state_file(obj, path, *a, **k):  # the weights are in the new folder, the trainer state not yet
        if point == "between_files" and isinstance(obj, dict) and obj.get("step") == KILL_AT:
            raise Killed(point)
        return real_save(obj, path, *a, **k)

    def publish(tmp: Path, final: Path) -> None:
        if point == "before_rename" and final.name.endswith(f"{KILL_AT:08d}"):
            raise Killed(point)
        real_publish(tmp, final)

    def prune(out: Path, keep: Path) -> None:
        if point == "after_rename" and keep.name.endswith(f"{KILL_AT:08d}"):
            raise Killed(point)
        real_prune(out, keep)

    monkeypatch.setattr(loop.torch, "save", state_file)
    monkeypatch.setattr(loop, "_publish", publish)
    monkeypatch.setattr(loop, "_prune", prune)


@pytest.mark.parametrize("point", ["after_records", "between_files", "before_rename", "after_rename"])
def test_a_kill_while_checkpointing_resumes_to_the_same_weights_and_complete_records(
        shards, straight, tmp_path, monkeypatch, point):
    store: dict[int, float] = {}
    with monkeypatch.context() as m:
        _kill_in(point, m)
        with pytest.raises(Killed):
            train_contrastive(shards, tmp_path, MODEL, on_step=Records(store, point), **OPTS)
    live = loop.latest_checkpoint(tmp_path)
    # whole or absent: the live checkpoint is the one of step 6 when its rename happened, else step 3's
    assert live.name == f"step-{(KILL_AT if point == 'after_rename' else 3):08d}"
    assert set(store) >= set(range(1, int(live.name[5:]) + 1))  # every step the checkpoint holds is recorded
    resumed = train_contrastive(shards, tmp_path, MODEL, on_step=Records(store), **OPTS)
    assert resumed["resumed_from"] == int(live.name[5:]) and resumed["step"] == 8
    assert store == straight["records"]  # every step once, with the uninterrupted run's losses
    a, b = load_file(straight["checkpoint"]), load_file(resumed["checkpoint"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000008"]  # no partial or older folder left


def test_a_checkpoint_folder_appears_only_whole(shards, tmp_path, monkeypatch):
    """Killed between the files of the first checkpoint: nothing to resume from, the run starts over."""
    def no_state(obj, path, *a, **k):
        raise Killed("between files")

    monkeypatch.setattr(loop.torch, "save", no_state)
    with pytest.raises(Killed):
        train_contrastive(shards, tmp_path, MODEL, **OPTS)
    assert loop.latest_checkpoint(tmp_path) is None and not loop.checkpoint_dirs(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [".step-00000003.partial"]
