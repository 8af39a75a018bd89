"""A Hugging Face `datasets` dataset on disk (save_to_disk output) with image/audio and text columns."""

from __future__ import annotations

from pathlib import Path


def is_hf_dataset_dir(path: Path) -> bool:
    """True for a folder written by Dataset.save_to_disk or DatasetDict.save_to_disk."""
    return path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()
                              or (path / "state.json").is_file())


def load_dataset_on_disk(path: str | Path, split: str | None = None):
    """The dataset (memory-mapped Arrow, media left undecoded), one split of a DatasetDict."""
    from datasets import Dataset, DatasetDict, load_from_disk

    ds = load_from_disk(str(path))
    if isinstance(ds, DatasetDict):
        names = list(ds.keys())
        split = split or ("train" if "train" in ds else names[0])
        if split not in ds:
            raise ValueError(f"split {split!r} not in {names}")
        ds = ds[split]
    if not isinstance(ds, Dataset):
        raise ValueError(f"{path} is not a datasets Dataset or DatasetDict")
    return ds
