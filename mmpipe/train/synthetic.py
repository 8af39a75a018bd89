"""Labelled synthetic training shards: correctly captioned coloured shapes, exported the way a
curated dataset is (key = sample id, key.json carries the label), for tests and benchmarks."""

from __future__ import annotations

import random
from pathlib import Path

from mmpipe.demo.shapes import random_pair
from mmpipe.export import export_shard
from mmpipe.schema import sample_id


def write_shape_shards(out_dir: str | Path, n: int, shard_size: int = 250, side: int = 64,
                       seed: int = 0) -> list[str]:
    """Write n captioned shapes as WebDataset shards (one shard in memory at a time); returns their paths."""
    rng = random.Random(seed)
    out_dir = Path(out_dir)
    paths = []
    for k, start in enumerate(range(0, n, shard_size)):
        samples = []
        for _ in range(min(shard_size, n - start)):
            content, text, (color, shape) = random_pair(rng, side)
            samples.append({"sample_id": sample_id(content, text), "content": content, "text": text,
                            "label": f"{color} {shape}", "color": color, "shape": shape})
        path = out_dir / f"shapes-{k:06d}.tar"
        export_shard(samples, path)
        paths.append(str(path))
    return paths
