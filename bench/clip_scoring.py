"""CLIP scoring throughput: the flow's scoring stage vs a bare open_clip batch loop, same shards, one run.

    .venv/bin/python bench/clip_scoring.py [--n 2000] [--per-shard 500] [--side 256] [--model mmpipe-tiny-clip] [--batch 128]

Prints pairs/s for each path and ratio = ours / baseline.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image


def make_shards(out: Path, n: int, side: int, per_shard: int = 500) -> list[Path]:
    from mmpipe.demo.shapes import random_pair
    from mmpipe.export import write_tar_atomic
    import random

    rng = random.Random(0)
    shards = []
    for k, start in enumerate(range(0, n, per_shard)):
        samples = []
        for i in range(start, min(n, start + per_shard)):
            data, text, _ = random_pair(rng, side)
            samples.append({"__key__": f"{i:07d}", "jpg": data, "txt": text.encode()})
        path = out / f"bench-{k:06d}.tar"
        write_tar_atomic(path, samples)
        shards.append(path)
    return shards


def ours(shards, model, pretrained, batch, workers) -> tuple[int, float]:
    from mmpipe.sources.webdataset import tar_batch
    from mmpipe.stages.clip_score import ClipScoreConfig, ClipScorer

    scorer = ClipScorer(ClipScoreConfig(model, pretrained, batch_size=batch, num_workers=workers, device="cpu"))
    scorer.setup()
    t = time.perf_counter()
    n = 0
    for path in shards:
        b, _ = tar_batch(str(path), "bench")
        n += len(scorer.score(b["sample_id"].to_pylist(), b["content"].to_pylist(), b["text"].to_pylist()))
    return n, time.perf_counter() - t


def baseline(shards, model_name, pretrained, batch) -> tuple[int, float]:
    """What a user writes by hand: read, decode, preprocess, encode, cosine, batch after batch."""
    import open_clip
    import webdataset as wds

    from mmpipe.models.clip import register_configs

    register_configs()
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    t = time.perf_counter()
    n = 0

    def flush(images, texts):
        with torch.no_grad():
            img = torch.nn.functional.normalize(model.encode_image(torch.stack(images)), dim=-1)
            txt = torch.nn.functional.normalize(model.encode_text(tokenizer(texts)), dim=-1)
            return (img * txt).sum(-1).tolist()

    for path in shards:
        images, texts = [], []
        for sample in wds.WebDataset(str(path), shardshuffle=False):
            images.append(preprocess(Image.open(io.BytesIO(sample["jpg"])).convert("RGB")))
            texts.append(sample["txt"].decode())
            if len(images) == batch:
                n += len(flush(images, texts))
                images, texts = [], []
        if images:
            n += len(flush(images, texts))
    return n, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--model", default="mmpipe-tiny-clip")
    ap.add_argument("--pretrained", default=None, help="tag or checkpoint; default random init (speed only)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--per-shard", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        shards = make_shards(Path(tmp), args.n, args.side, args.per_shard)
        # warm both paths once on one shard so neither pays first-call costs in the timing
        ours(shards[:1], args.model, args.pretrained, args.batch, args.workers)
        baseline(shards[:1], args.model, args.pretrained, args.batch)
        n_b, t_b = baseline(shards, args.model, args.pretrained, args.batch)
        n_o, t_o = ours(shards, args.model, args.pretrained, args.batch, args.workers)
    assert n_b == n_o == args.n
    ours_rate, base_rate = n_o / t_o, n_b / t_b
    print(f"model={args.model} n={args.n} per_shard={args.per_shard} side={args.side}px batch={args.batch} "
          f"workers={args.workers} "
          f"torch_threads={torch.get_num_threads()}")
    print(f"ours (ClipScorer, DataLoader workers): {ours_rate:8.1f} pairs/s")
    print(f"baseline (bare open_clip loop):        {base_rate:8.1f} pairs/s")
    print(f"ratio = ours/baseline = {ours_rate / base_rate:.2f}")


if __name__ == "__main__":
    main()
