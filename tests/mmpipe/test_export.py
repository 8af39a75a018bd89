"""Exported shards read back by webdataset, by `datasets`, and by open_clip_train's own loader."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from mmpipe.export import as_jpeg, export_shard, read_staged, stage_batch, staged_ids, write_sizes
from mmpipe.schema import batch_from_rows, sample_id


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def exported(tmp_path):
    out = tmp_path / "ds"
    sizes = {}
    for k in range(2):
        samples = [{"sample_id": sample_id(_png(10 * k + i), f"caption {k} {i}"), "content": _png(10 * k + i),
                    "text": f"a caption number {k} {i}", "clip_score": 0.1 * i} for i in range(5)]
        name = f"shard-{k:06d}.tar"
        sizes[name] = export_shard(samples, out / name)
    write_sizes(out, sizes)
    return out


def test_non_jpeg_is_reencoded_and_jpeg_kept_as_is():
    png = _png(0)
    jpg = as_jpeg(png)
    assert jpg[:3] == b"\xff\xd8\xff" and as_jpeg(jpg) == jpg


def test_staged_shards_round_trip(tmp_path):
    rows = [{"sample_id": "a", "content": b"A", "text": "x y", "keep": True, "meta": '{"label": "L"}'},
            {"sample_id": "b", "content": b"B", "text": "dropped", "keep": False},
            {"sample_id": "a", "content": b"A", "text": "x y", "keep": True}]  # the same pair met again
    assert stage_batch(batch_from_rows(rows, shard_index=3), tmp_path / "s.tar") == 1
    assert read_staged(tmp_path / "s.tar") == [{"sample_id": "a", "content": b"A", "text": "x y",
                                                "ordinal": 3 << 32, "meta": {"label": "L"}}]
    assert staged_ids(tmp_path / "s.tar").to_pylist() == [{"sample_id": "a", "ordinal": 3 << 32}]


def test_webdataset_reads_the_shards(exported):
    import webdataset as wds

    ds = wds.WebDataset(str(exported / "shard-{000000..000001}.tar"), shardshuffle=False).decode("pil").to_tuple(
        "jpg", "txt", "json")
    items = list(ds)
    assert len(items) == 10 and items[0][0].mode == "RGB" and items[0][1].startswith("a caption")
    assert "sample_id" in items[0][2] and "clip_score" in items[0][2]
    assert json.loads((exported / "sizes.json").read_text()) == {"shard-000000.tar": 5, "shard-000001.tar": 5}


def test_datasets_reads_the_shards(exported):
    from datasets import load_dataset

    ds = load_dataset("webdataset", data_files={"train": str(exported / "shard-*.tar")}, split="train")
    assert len(ds) == 10 and {"jpg", "txt", "json"} <= set(ds.column_names)
    assert ds[0]["jpg"].size == (64, 48)


def test_open_clip_train_loader_reads_the_shards(exported, tiny_clip_checkpoint):
    import open_clip
    from open_clip_train.data import get_wds_dataset

    from mmpipe.models.clip import TINY_MODEL, load_clip

    bundle = load_clip(TINY_MODEL, tiny_clip_checkpoint, "cpu")
    args = SimpleNamespace(train_data=str(exported / "shard-{000000..000001}.tar"), val_data=None,
                           train_num_samples=None, dataset_resampled=False, train_data_upsampling_factors=None,
                           seed=0, batch_size=4, workers=0, world_size=1)
    info = get_wds_dataset(args, bundle.preprocess, is_train=True, tokenizer=open_clip.get_tokenizer(TINY_MODEL))
    images, texts = next(iter(info.dataloader))
    assert info.dataloader.num_samples == 12 and images.shape == (4, 3, 64, 64) and texts.shape == (4, 32)
