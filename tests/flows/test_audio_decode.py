"""A speech version decodes with the standard tools: `datasets.load_dataset` on its folder and with the
webdataset builder (an Audio column through torchcodec), and `webdataset` with mmpipe's decoder; each
gives the arrays and rate our own decode gives."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest

from mmpipe.demo.speech import SPEECH_DIR


@pytest.fixture(scope="module")
def speech_version(prefect_harness, tmp_path_factory) -> Path:
    from flows.transcribe import transcribe_flow

    result = transcribe_flow(str(SPEECH_DIR), "speech", home=str(tmp_path_factory.mktemp("speech")),
                             whisper_model="tiny.en", device="cpu", shard_size=6)
    return Path(result["dataset"]["out_dir"])


def _ours(version: Path) -> dict[str, np.ndarray]:
    """Every clip of the version decoded our way (PyAV), by sample key."""
    from mmpipe.audio_io import decode_audio_bytes

    out = {}
    for shard in sorted(version.glob("shard-*.tar")):
        with tarfile.open(shard) as tf:
            for m in tf:
                if m.name.endswith(".flac"):
                    array, rate = decode_audio_bytes(tf.extractfile(m).read())
                    assert rate == 16000
                    out[m.name[: -len(".flac")]] = array
    return out


def _same(array, expected: np.ndarray) -> None:
    array = np.asarray(array, dtype=np.float32)
    assert array.shape == expected.shape and len(expected) > 1600
    np.testing.assert_allclose(array, expected, atol=1e-4)  # FLAC is lossless: 16-bit steps apart at most


_LOAD_BOTH_WAYS = """
import json, sys
import numpy as np
from datasets import Audio, load_dataset
version, out = sys.argv[1], sys.argv[2]
arrays, rows = {}, []
for way, loaded in (("folder", load_dataset(version, split="train")),
                    ("builder", load_dataset("webdataset", data_files={"train": version + "/shard-*.tar"},
                                             split="train"))):
    assert isinstance(loaded.features["flac"], Audio), loaded.features
    for row in loaded:
        arrays[way + "/" + row["__key__"]] = np.asarray(row["flac"]["array"], dtype=np.float32)
        rows.append({"way": way, "key": row["__key__"], "rate": row["flac"]["sampling_rate"]})
np.savez(out + ".npz", **arrays)
open(out + ".json", "w").write(json.dumps(rows))
"""


def test_datasets_decodes_the_audio_column_both_ways(speech_version, tmp_path):
    """In a fresh process, as a user runs it: with a system FFmpeg as it is, else with PyAV's on LD_LIBRARY_PATH."""
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("torchcodec", reason="torchcodec is a dependency (pyproject.toml): run make install")
    from mmpipe.audio_io import ffmpeg_for_torchcodec, pyav_ffmpeg_dir

    env = dict(os.environ)
    if not ffmpeg_for_torchcodec():
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(pyav_ffmpeg_dir(tmp_path / "ffmpeg")),
                                                               env.get("LD_LIBRARY_PATH")]))
    out = tmp_path / "loaded"
    run = subprocess.run([sys.executable, "-c", _LOAD_BOTH_WAYS, str(speech_version), str(out)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    ours, rows, arrays = _ours(speech_version), json.loads(Path(f"{out}.json").read_text()), np.load(f"{out}.npz")
    assert sorted(r["way"] for r in rows) == ["builder"] * 10 + ["folder"] * 10 and len(ours) == 10
    for r in rows:
        assert r["rate"] == 16000
        _same(arrays[f"{r['way']}/{r['key']}"], ours[r["key"]])


def test_webdataset_decodes_with_mmpipes_handler(speech_version):
    import webdataset as wds

    from mmpipe.audio_io import wds_audio

    ours = _ours(speech_version)
    shards = [str(p) for p in sorted(speech_version.glob("shard-*.tar"))]
    seen = 0
    for sample in wds.WebDataset(shards, shardshuffle=False).decode(wds_audio):
        assert sample["flac"]["sampling_rate"] == 16000 and isinstance(sample["txt"], str)
        _same(sample["flac"]["array"], ours[sample["__key__"]])
        seen += 1
    assert seen == len(ours)
