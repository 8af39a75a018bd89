"""Chaos: SIGKILL `mmpipe curate` and `mmpipe transcribe` at random points, rerun, compare.

Each round starts a command in a fresh home, kills it (kill -9) after a random delay within its
clean running time, runs the same command again to the end, and compares the home with an
uninterrupted run: the same kept samples, decisions, manifest and shard members; no row duplicated
on its key; no data file the catalog does not reference; no process of the killed command left.

    .venv/bin/python bench/chaos.py [--kills 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "chaos"
EXE = str(Path(sys.executable).with_name("mmpipe"))
KEYS = {"samples": "sample_id", "occurrences": "run_id, ordinal", "decisions": "sample_id, run_id, stage",
        "clip_scores": "sample_id, model, pretrained", "transcripts": "sample_id, model, compute_type, options_key"}


def prepare() -> dict[str, list[str]]:
    """The inputs (synthetic shapes with planted problems, the shipped speech clips) and a seeded tiny CLIP."""
    sys.path.insert(0, str(ROOT))
    import open_clip
    import torch
    from safetensors.torch import save_file

    from mmpipe.demo.shapes import write_shapes
    from mmpipe.demo.speech import SPEECH_DIR
    from mmpipe.models.clip import TINY_MODEL, register_configs

    shutil.rmtree(OUT, ignore_errors=True)
    shapes = write_shapes(OUT / "data" / "shapes", n=600, n_seed=8, n_holdout=8, shard_size=100)
    register_configs()
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_MODEL, pretrained=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(OUT / "data" / "clip.safetensors"))
    return {"curate": ["curate", shapes.pattern, "--name", "shapes", "--min-side", "64", "--clip-model", TINY_MODEL,
                       "--clip-pretrained", str(OUT / "data" / "clip.safetensors"), "--keep-fraction", "0.7",
                       "--clip-batch-size", "16", "--clip-workers", "0", "--shard-size", "100"],
            "transcribe": ["transcribe", str(SPEECH_DIR), "--name", "speech", "--whisper-model", "tiny.en",
                           "--device", "cpu", "--shard-size", "4"]}


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    e.update(HF_HUB_OFFLINE="1")
    return e


def run(args: list[str], home: Path) -> float:
    t = time.perf_counter()
    done = subprocess.run([EXE, *args, "--home", str(home)], env=env(), capture_output=True, text=True, timeout=1200)
    if done.returncode:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - t


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def snapshot(home: Path) -> dict:
    """What must match the uninterrupted run, and what must never happen (duplicates, orphans)."""
    from warehouse import Warehouse
    from warehouse.maintenance import check

    wh = Warehouse(home)
    ds = wh.sql("SELECT shards_uri, manifest_uri FROM datasets").to_pylist()[0]
    members = []
    if ds["shards_uri"]:
        from mmpipe.sources.tars import expand_shards, tar_samples

        for path in expand_shards(wh.resolve(ds["shards_uri"])):
            members += sorted(f"{s['__key__']}.{ext}" for s in tar_samples(path, None) for ext in s
                              if not ext.startswith("__"))
    import pyarrow.parquet as pq

    # The newest run: a kill that lands after a run completed (while the command exits) leaves a whole
    # run, and the rerun is a second whole run; each run must equal the uninterrupted one.
    last = wh.sql("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1").column("run_id")[0].as_py()
    return {
        "kept": sorted(wh.sql("SELECT sample_id FROM outcomes WHERE keep AND run_id = ?", [last])
                       .column("sample_id").to_pylist()),
        "decisions": sorted(tuple(r.values()) for r in wh.sql(
            "SELECT sample_id, stage, keep, coalesce(drop_reason, '') AS r FROM decisions WHERE run_id = ?",
            [last]).to_pylist()),
        "manifest": sorted(pq.read_table(wh.resolve(ds["manifest_uri"]))["sample_id"].to_pylist()),
        "members": sorted(members),
        "duplicated": sum(wh.sql(f"SELECT count(*) - count(DISTINCT ({k})) AS d FROM {t}").column("d")[0].as_py()
                          for t, k in KEYS.items()),
        "orphans": len(check(wh)["orphans"]),
        "status": wh.sql("SELECT string_agg(DISTINCT status, ',') AS s FROM runs").column("s")[0].as_py(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    commands = prepare()
    clean, clean_s = {}, {}
    for name, cmd in commands.items():
        clean_s[name] = run(cmd, OUT / f"clean-{name}")
        clean[name] = snapshot(OUT / f"clean-{name}")
        print(f"clean {name}: {clean_s[name]:.1f} s, {len(clean[name]['kept'])} kept", flush=True)
    survived = lost = duplicated = orphans = left = 0
    for k in range(args.kills):
        name = rng.choice(sorted(commands))
        home = OUT / f"kill-{k:02d}-{name}"
        delay = rng.uniform(1.0, clean_s[name])
        proc = subprocess.Popen([EXE, *commands[name], "--home", str(home)], env=env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(delay)
        kids = children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        time.sleep(2)
        stray = sum(alive(c) for c in kids)
        run(commands[name], home)
        got, want = snapshot(home), clean[name]
        rows_lost = len(set(want["decisions"]) - set(got["decisions"])) + len(set(want["members"]) - set(got["members"]))
        same = all(got[f] == want[f] for f in ("kept", "decisions", "manifest", "members"))
        ok = same and got["duplicated"] == 0 and got["orphans"] == 0 and stray == 0 and got["status"] == "completed"
        survived += ok
        lost += rows_lost
        duplicated += got["duplicated"]
        orphans += got["orphans"]
        left += stray
        print(f"kill {k + 1:2d}: {name:<10} at {delay:5.1f} s -> {'ok' if ok else 'DIFFERENT'} "
              f"(lost {rows_lost}, duplicated {got['duplicated']}, orphan files {got['orphans']}, processes left "
              f"{stray}, runs {got['status']})", flush=True)
    print(f"\nkills survived: {survived} / {args.kills}; rows lost: {lost}; rows duplicated: {duplicated}; "
          f"orphaned files: {orphans}; processes left: {left}")


if __name__ == "__main__":
    main()
