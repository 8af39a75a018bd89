"""A home moves whole: copied elsewhere with the original removed, search, report, training and export
work from the copy, and no file the home holds for its data names the old place."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mmpipe.cli import app
from mmpipe.models.clip import TINY_MODEL

runner = CliRunner()


@pytest.fixture(scope="module")
def moved(prefect_harness, tiny_clip_checkpoint, tmp_path_factory):
    """A home curated with a CLIP filter whose checkpoint lives in the home, indexed, then copied and deleted."""
    from flows.curate import curate_flow
    from mmpipe.demo.shapes import write_shapes

    root = tmp_path_factory.mktemp("moved")
    shapes = write_shapes(root / "src", n=60, n_seed=8, n_holdout=8, shard_size=30)
    home = root / "first-home"
    (home / "models").mkdir(parents=True)
    filt = str(shutil.copy(tiny_clip_checkpoint, home / "models" / "filter.safetensors"))
    curate_flow(shapes.pattern, "shapes", home=str(home), clip_model=TINY_MODEL, clip_pretrained=filt, min_side=64,
                min_clip_score=-1.0, clip_workers=0)
    out = runner.invoke(app, ["search", "shapes@v1", "a circle", "--home", str(home)])
    assert out.exit_code == 1 and "no index for shapes@v1: run `mmpipe index shapes@v1` first" in out.output
    out = runner.invoke(app, ["search", "shapes@v7", "a circle", "--home", str(home)])
    assert out.exit_code == 1 and "no version 'v7'" in out.output, out.output
    out = runner.invoke(app, ["index", "shapes@v1", "--home", str(home)])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["train", "contrastive", "--dataset", "shapes@v1", "--model", "mmpipe-micro-clip",
                              "--steps", "2", "--batch-size", "16", "--no-evaluate", "--home", str(home)])
    assert out.exit_code == 0, out.output
    copy = root / "elsewhere" / "home"
    shutil.copytree(home, copy)
    shutil.rmtree(home)
    return {"old": str(home), "home": copy}


def _texts_under(folder: Path) -> dict[str, str]:
    """What the home's own data files say (index metadata, manifests, cards, reports), as text."""
    out = {}
    for p in folder.rglob("*"):
        if p.suffix in (".json", ".html", ".md", ".yaml", ".txt"):
            out[str(p)] = p.read_text(errors="replace")
        elif p.suffix == ".parquet":
            out[str(p)] = json.dumps(pq.read_table(p).to_pylist(), default=str)
    return out


def test_search_report_training_and_export_work_from_the_copy(moved):
    home, old = moved["home"], moved["old"]
    args = ["--home", str(home)]
    out = runner.invoke(app, ["search", "shapes@v1", "a red circle", "-k", "3", "--format", "json", *args])
    assert out.exit_code == 0, out.output
    hits = json.loads(out.output)
    assert hits and old not in out.output
    for h in hits:  # "<shards folder>/<shard>.tar/<sample id>": the version's own copy, in the new home
        tar = Path(h["image_path"]).parent
        assert tar.is_file() and tar.is_relative_to(home), h
    out = runner.invoke(app, ["report", "shapes@v1", *args])
    assert out.exit_code == 0 and Path(out.output.strip()).is_file(), out.output
    assert Path(out.output.strip()).is_relative_to(home)
    out = runner.invoke(app, ["train", "contrastive", "--dataset", "shapes@v1", "--model", "mmpipe-micro-clip",
                              "--steps", "2", "--batch-size", "16", "--no-evaluate", *args])
    assert out.exit_code == 0 and str(home) in out.output and old not in out.output, out.output
    # diffusion, by default on the contrastive model trained before the move (its checkpoint stored home-relative)
    out = runner.invoke(app, ["train", "diffusion", "--dataset", "shapes@v1", "--steps", "2", "--batch-size", "8",
                              "--no-evaluate", *args])
    assert out.exit_code == 0, out.output
    ids = home / "ids.npy"
    import numpy as np

    manifest = pq.read_table(home / "datasets" / "shapes" / "v1" / "manifest.parquet")
    np.save(ids, np.array(manifest["sample_id"].to_pylist()[:5]))
    out = runner.invoke(app, ["export", "shapes@v1", "--ids", str(ids), "--name", "five", "--shard-size", "3", *args])
    assert out.exit_code == 0 and "dataset v1: 5 samples" in out.output, out.output
    assert old not in out.output
    # Left out: Prefect's own database, and runs.params, the record of each command as it was called.
    stale = {p for p, text in _texts_under(home).items()
             if old in text and "/prefect/" not in p and "/lake/data/main/runs/" not in p}
    assert not stale, sorted(stale)


def test_the_index_stores_paths_relative_to_the_home(moved):
    info = json.loads((moved["home"] / "indexes" / "shapes" / "v1" / "index.json").read_text())
    assert not Path(info["path"]).is_absolute() and info["path"] == "indexes/shapes/v1"
    assert all(not Path(f).is_absolute() for files in info["embeddings"].values() for f in files)
    assert info["pretrained"] == "models/filter.safetensors"
    meta = pq.read_table(moved["home"] / "indexes" / "shapes" / "v1" / "metadata.parquet").to_pylist()
    assert all(not Path(m["image_path"]).is_absolute() for m in meta)
