"""Streaming training data: deterministic splits, worker sharding, seeded shuffles, bad members,
and a stream position that restarts at exactly the next batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from mmpipe.export import write_tar_atomic
from mmpipe.sources.tars import tar_samples
from mmpipe.train.data import ShardStream, expand_shards, iter_pairs, pairs_from_shards, split_of
from mmpipe.train.synthetic import write_shape_shards


def _tokens(texts):
    return torch.tensor([[len(t), sum(map(ord, t)) % 1000] for t in texts])


def _tensor(img):
    return torch.tensor([float(img.width), float(sum(img.getpixel((0, 0))))])


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[str]:
    return write_shape_shards(tmp_path_factory.mktemp("stream"), 120, shard_size=30, side=32)


def _stream(shards, **kw) -> ShardStream:
    return ShardStream(shards, _tensor, _tokens, **{"shuffle_buffer": 20, **kw})


def test_split_is_a_pure_function_of_the_sample_id():
    ids = [f"{i:064x}" for i in range(4000)]
    first = [split_of(i) for i in ids]
    assert first == [split_of(i) for i in reversed(ids)][::-1]
    assert 0.08 < first.count("val") / len(ids) < 0.12
    assert all(split_of(i, 0.0) == "train" for i in ids[:100]) and all(split_of(i, 1.0) == "val" for i in ids[:100])


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("workers", [0, 2, 5])  # 5 > 4 shards: split by sample
def test_one_pass_yields_each_sample_of_the_split_once(shards, workers):
    every = {s["sample_id"]: s for s in _stream(shards, split=None, repeat=False, shuffle_buffer=0)}
    assert len(every) == 120 and all(s["label"] and s["caption"] for s in every.values())
    got = {}
    for split in ("train", "val"):
        loader = DataLoader(_stream(shards, split=split, repeat=False), batch_size=7, num_workers=workers)
        ids = [i for b in loader for i in b["sample_id"]]
        assert len(ids) == len(set(ids))
        assert all(split_of(i) == split for i in ids)
        got[split] = set(ids)
    assert got["train"] | got["val"] == set(every) and not got["train"] & got["val"]


def test_brace_patterns_expand():
    assert expand_shards("d/s-{000000..000002}.tar") == ["d/s-000000.tar", "d/s-000001.tar", "d/s-000002.tar"]
    assert expand_shards(["a.tar", "b-{1..2}.tar"]) == ["a.tar", "b-1.tar", "b-2.tar"]
    with pytest.raises(ValueError):
        expand_shards([])


def test_shuffle_is_seeded_and_differs_by_epoch(shards):
    train_ids = {s["sample_id"] for s in _stream(shards, split="train", repeat=False)}

    def two_epochs(seed):
        it = iter(_stream(shards, split="train", seed=seed))
        return [next(it)["sample_id"] for _ in range(len(train_ids))], [next(it)["sample_id"] for _ in train_ids]

    first, second = two_epochs(0)
    assert (first, second) == two_epochs(0)
    assert set(first) == set(second) == train_ids and first != second
    assert two_epochs(1)[0] != first


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_at_exactly_the_next_batch(shards, workers):
    def loader(stream):
        return iter(DataLoader(stream, batch_size=8, num_workers=workers, drop_last=True))

    straight = loader(_stream(shards, seed=3))
    expected = [next(straight)["sample_id"] for _ in range(20)]  # > one epoch: crosses the boundary
    stream = _stream(shards, seed=3)
    first = loader(stream)
    state = None
    for _ in range(7):
        state = ShardStream.advance(state, next(first))
    resumed_stream = _stream(shards, seed=3)
    resumed_stream.resume(json.loads(json.dumps(state)))  # survives JSON (string keys)
    resumed = loader(resumed_stream)
    assert [next(resumed)["sample_id"] for _ in range(13)] == expected[7:]


def test_resume_with_another_worker_count_warns_and_skips_about_as_far(shards):
    stream = _stream(shards, seed=3)
    stream.resume({"batches": 6, "workers": 2, "positions": {0: 24, 1: 30}})
    with pytest.warns(UserWarning, match="only approximately"):
        first = next(iter(stream))
    assert first["position"] == 54 and first["worker"] == 0


def test_bad_members_are_skipped_and_broken_shards_end_early(shards, tmp_path, caplog):
    good = [{k: v for k, v in s.items() if k != "__url__"} for s in tar_samples(shards[0])][:3]  # jpg, txt, json
    bad = tmp_path / "bad.tar"
    write_tar_atomic(bad, good + [
        {"__key__": "broken", "jpg": b"\xff\xd8\xff\xe0garbage", "txt": b"a broken picture"},
        {"__key__": "pdf", "jpg": b"%PDF-1.4 not an image", "txt": b"a document"},
        {"__key__": "nocaption", "jpg": good[0]["jpg"], "json": b"{}"},
        {"__key__": "notext", "txt": b"words without a picture"}])
    truncated = tmp_path / "truncated.tar"
    data = Path(shards[1]).read_bytes()
    truncated.write_bytes(data[: len(data) // 2 + 100])  # cut inside a member
    got = list(_stream([str(bad), str(truncated)], split=None, repeat=False, shuffle_buffer=0))
    keys = [s["sample_id"] for s in got]
    assert len(keys) >= 3 + 5 and not any(k in ("broken", "pdf", "nocaption", "notext") for k in keys)
    assert "broken" in caplog.text and "truncated.tar" in caplog.text
    with pytest.raises(FileNotFoundError):
        _stream([str(tmp_path / "missing.tar")])
    with pytest.raises(ValueError, match="broken"):
        pairs_from_shards([str(truncated)])


def test_pairs_stream_raw_bytes_and_captions(shards):
    pairs = list(iter_pairs(shards[:2]))
    assert len(pairs) == 60 and all(p[0][:3] == b"\xff\xd8\xff" and p[1] for p in pairs)
    assert len(list(iter_pairs(shards, split="val"))) == sum(1 for s in _stream(shards, split="val", repeat=False))
    assert pairs_from_shards(shards[:1]) == pairs[:30]


def test_a_worker_with_nothing_to_read_is_an_error_not_a_hang(tmp_path):
    empty = str(tmp_path / "empty.tar")
    write_tar_atomic(empty, [{"__key__": "x", "jpg": b"\xff\xd8\xffno", "txt": b"a picture"}])
    with pytest.raises(RuntimeError, match="no usable sample"):
        next(iter(_stream([empty], split=None)))
    with pytest.raises(RuntimeError, match="found no"):
        next(iter(_stream([empty], split="val", val_fraction=0.0)))


def test_samples_carry_images_tokens_and_position(shards):
    sample = next(iter(_stream(shards)))
    assert sample["image"].shape == (2,) and sample["text"].shape == (2,)
    assert {"worker", "workers", "position", "label", "caption", "sample_id"} <= set(sample)
