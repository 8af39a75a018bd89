"""The asr objective's training loop (`mmpipe.train.recipes.train_asr`: shard streaming, per-step records,
checkpoints) against a plain transformers training loop on the same shards, the same model config, batch size
and steps; then our loop's peak memory at two numbers of clips.

The shards are the shipped speech set's clips (Ogg Opus, with their reference as the transcript), repeated
under new keys up to `--clips`. The baseline is the loop a transformers user writes: a map-style Dataset that
decodes each clip with the same decoder and feature extractor, a shuffling DataLoader, AdamW, `model(...).loss`
backward, no checkpoints. Each path runs `--steps` steps in its own fresh process, one after the other;
samples/s counts from the first step to the last (model build and imports excluded for both).

    PYTHONPATH=$PWD .venv/bin/python bench/asr_training.py --clips 1200 --steps 60 --memory-clips 300 4800

Prints samples/s of each, the ratio ours/baseline (goal >= 0.9), and our loop's peak RSS at each
`--memory-clips` size with their ratio (flat: about 1).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = {"max_seconds": 4}


def write_shards(out: Path, clips: int, shard_size: int = 200) -> str:
    """`clips` samples as the transcribe flow exports them, cycling through the speech set's good clips."""
    from mmpipe.demo.speech import speech_set
    from mmpipe.sources.tars import write_tar_atomic

    folder = out / "set"
    truth = speech_set(folder)
    good = sorted(k for k, t in truth.items() if t["kind"] == "good")
    samples = []
    for i in range(clips):
        name = good[i % len(good)]
        samples.append({"__key__": f"c{i:07d}", "ogg": (folder / name).read_bytes(), "txt": truth[name]["text"].encode(),
                        "json": json.dumps({"sample_id": f"c{i:07d}", "reference": truth[name]["text"]}).encode()})
    n = 0
    for start in range(0, clips, shard_size):
        write_tar_atomic(out / f"shard-{n:06d}.tar", samples[start:start + shard_size])
        n += 1
    return str(out / f"shard-{{000000..{n - 1:06d}}}.tar")


def ours(shards: str, steps: int, batch: int) -> dict:
    from mmpipe.train.recipes import train_asr

    out = tempfile.mkdtemp()
    marks = {}

    def on_step(step, metrics):
        marks.setdefault("first", time.perf_counter()) if step == 1 else None
        marks["last"] = time.perf_counter()

    train_asr(shards, out, model=MODEL, split=None, steps=steps, batch_size=batch, lr=3e-3, warmup_steps=5,
              checkpoint_every=max(1, steps // 4), on_step=on_step, progress=False)
    return {"samples_per_s": (steps - 1) * batch / (marks["last"] - marks["first"])}


def baseline(shards: str, steps: int, batch: int) -> dict:
    """A plain transformers loop on the same shards and model config."""
    import tarfile

    import torch
    from torch.utils.data import DataLoader, Dataset

    from mmpipe.audio_io import decode_audio_bytes
    from mmpipe.sources.tars import expand_shards
    from mmpipe.train.objectives.asr import AsrConfig, AsrFeatures, whisper_config
    from transformers import WhisperForConditionalGeneration

    config = AsrConfig(**MODEL)
    features = AsrFeatures(config)
    items = []
    for path in expand_shards(shards):  # the encoded clips and their texts (what a datasets table would hold)
        with tarfile.open(path) as tf:
            members = {m.name: tf.extractfile(m).read() for m in tf if m.isfile()}
        for name, data in members.items():
            if name.endswith(".ogg"):
                items.append((data, members[name[:-4] + ".txt"].decode()))

    class Clips(Dataset):
        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            audio, _ = decode_audio_bytes(items[i][0])
            return {"input_features": features.audio(audio), "labels": features.labels(items[i][1])}

    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(whisper_config(config, len(features.tokenizer)))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loader = DataLoader(Clips(), batch_size=batch, shuffle=True, drop_last=True)
    step, first = 0, None
    while step < steps:
        for b in loader:
            used = int((b["labels"] != -100).sum(1).max())
            loss = model(input_features=b["input_features"], labels=b["labels"][:, :used]).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            step += 1
            if step == 1:
                first = time.perf_counter()
            if step == steps:
                break
    return {"samples_per_s": (steps - 1) * batch / (time.perf_counter() - first)}


def _child(args) -> None:
    fn = {"ours": ours, "baseline": baseline}[args.child]
    result = fn(args.shards, args.steps, args.batch)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def _run(which: str, shards: str, steps: int, batch: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", which, "--shards", shards, "--steps", str(steps),
                          "--batch", str(batch)], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, default=1200)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--memory-clips", type=int, nargs=2, default=[300, 4800])
    p.add_argument("--child")
    p.add_argument("--shards")
    args = p.parse_args()
    if args.child:
        return _child(args)
    root = Path(tempfile.mkdtemp(prefix="asr-bench-"))
    shards = write_shards(root / "speed", args.clips)
    a = _run("ours", shards, args.steps, args.batch)
    b = _run("baseline", shards, args.steps, args.batch)
    print(f"{args.clips} clips, {args.steps} steps of batch {args.batch}, one torch thread each:")
    print(f"  ours (train_asr):        {a['samples_per_s']:.1f} samples/s, peak RSS {a['peak_rss_mb']:.0f} MB")
    print(f"  baseline (plain loop):   {b['samples_per_s']:.1f} samples/s, peak RSS {b['peak_rss_mb']:.0f} MB")
    print(f"  ratio ours/baseline:     {a['samples_per_s'] / b['samples_per_s']:.2f} (goal >= 0.9)")
    small, large = args.memory_clips
    peaks = [_run("ours", write_shards(root / f"mem{n}", n), args.steps, args.batch)["peak_rss_mb"] for n in (small, large)]
    print(f"our peak RSS at {small} clips {peaks[0]:.0f} MB, at {large} clips {peaks[1]:.0f} MB: "
          f"ratio {peaks[1] / peaks[0]:.2f} (flat: about 1)")


if __name__ == "__main__":
    main()
