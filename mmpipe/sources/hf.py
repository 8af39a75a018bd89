"""A Hugging Face `datasets` dataset on disk (save_to_disk output) with image/audio and text columns."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa


def is_hf_dataset_dir(path: Path) -> bool:
    """True for a folder written by Dataset.save_to_disk or DatasetDict.save_to_disk."""
    return path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()
                              or (path / "state.json").is_file())


def load_arrow(path: str | Path, split: str | None = None) -> pa.Table:
    """The dataset's rows as Arrow, media columns left undecoded ({bytes, path} structs)."""
    from datasets import Dataset, DatasetDict, load_from_disk

    ds = load_from_disk(str(path))
    if isinstance(ds, DatasetDict):
        names = list(ds.keys())
        split = split or ("train" if "train" in ds else names[0])
        if split not in ds:
            raise ValueError(f"split {split!r} not in {names}")
        ds = ds[split]
    assert isinstance(ds, Dataset)
    return ds.with_format("arrow")[:]
