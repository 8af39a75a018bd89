"""The transcribe flow with the real tiny.en model on real audio files, under the Prefect harness.

A speech version decodes with the standard tools: `datasets.load_dataset` on its folder and with the
webdataset builder (an Audio column through torchcodec), and `webdataset` with mmpipe's decoder; each
gives the arrays and rate our own decode gives."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mmpipe.demo.speech import EXPECTED, SPEECH_DIR
from warehouse import Warehouse


@pytest.fixture
def transcribe(prefect_harness):
    from flows.transcribe import transcribe_flow

    def run(source, home, **kw):
        kw.setdefault("whisper_model", "tiny.en")
        kw.setdefault("device", "cpu")
        return transcribe_flow(source, kw.pop("name", "speech"), home=str(home), **kw)

    return run


def _outcomes(home, run_id):
    rows = Warehouse(home).query_readonly(
        "SELECT s.source_key, coalesce(o.drop_reason, 'kept') AS outcome FROM outcomes o JOIN samples s "
        "USING (sample_id) WHERE o.run_id = ?", [run_id]).to_pylist()
    return {r["source_key"]: r["outcome"] for r in rows}


@pytest.fixture(scope="module")
def speech_run(prefect_harness, tmp_path_factory) -> tuple:
    """(home, result) of the first transcription of the demo speech folder: checked for its accounting
    below, and its version decoded with the standard tools (one transcription serves both)."""
    from flows.transcribe import transcribe_flow

    home = tmp_path_factory.mktemp("speech-home")
    return home, transcribe_flow(str(SPEECH_DIR), "speech", home=str(home), whisper_model="tiny.en", device="cpu",
                                 shard_size=6)


@pytest.fixture(scope="module")
def speech_version(speech_run) -> Path:
    return Path(speech_run[1]["dataset"]["out_dir"])


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


def test_every_clip_is_accounted_for_and_rerun_transcribes_nothing_twice(transcribe, speech_run):
    home, first = speech_run
    assert _outcomes(home, first["run_id"]) == EXPECTED
    assert first["ingested"] == len(EXPECTED) == first["kept"] + sum(
        v for k, v in first["outcomes"].items() if k != "kept")
    wh = Warehouse(home)
    t = wh.query_readonly("SELECT count(*) AS n, count(DISTINCT sample_id) AS d, count(wer) AS w, "
                          "avg(wer) AS mean_wer FROM transcripts").to_pylist()[0]
    assert t["n"] == t["d"] == first["transcribed"] == 12  # 10 kept + silence + noise reach the model
    assert t["w"] == 10 and t["mean_wer"] < 0.4
    assert first["wer"]["with_reference"] == 10
    seg = json.loads(wh.query_readonly("SELECT segments FROM transcripts WHERE text <> '' LIMIT 1")
                     .column("segments")[0].as_py())
    assert {"start", "end", "text"} <= set(seg[0])
    ds = first["dataset"]
    assert ds["n_samples"] == 10
    with tarfile.open(Path(ds["out_dir"]) / "shard-000000.tar") as tf:
        names = tf.getnames()
    assert any(n.endswith(".flac") for n in names) and any(n.endswith(".json") for n in names)
    manifest = pq.read_table(ds["manifest_uri"])
    assert {"reference", "transcript", "wer", "language"} <= set(manifest.column_names)
    # the speech shards load with `datasets` as they are: the card declares an Audio column (decoded in
    # test_datasets_decodes_the_audio_column_both_ways above; the bytes here)
    from datasets import Audio, load_dataset

    from mmpipe.export import decode_audio

    loaded = load_dataset(ds["out_dir"], split="train").cast_column("flac", Audio(decode=False))
    assert len(loaded) == 10 and {"duration_s", "language", "reference"} <= set(loaded[0]["json"])
    audio = decode_audio(loaded[0]["flac"]["bytes"])
    assert abs(len(audio) / 16000 - loaded[0]["json"]["duration_s"]) < 0.05

    second = transcribe(str(SPEECH_DIR), home, shard_size=6)
    assert second["transcribed"] == 0 and second["new_samples"] == 0
    assert _outcomes(home, second["run_id"]) == EXPECTED
    assert second["dataset"]["version"] == "v2"
    assert wh.query_readonly("SELECT count(*) AS n FROM transcripts").column("n")[0].as_py() == 12


def test_webdataset_table_and_hf_audio_sources(transcribe, tmp_path, http_server):
    clip = (SPEECH_DIR / "clip00.flac").read_bytes()
    ref = (SPEECH_DIR / "clip00.txt").read_text()
    with tarfile.open(tmp_path / "audio-000000.tar", "w") as tf:
        for name, data in (("a.flac", clip), ("a.txt", ref.encode()), ("b.wav", b"not audio"),
                           ("c.flac", (SPEECH_DIR / "clip02.flac").read_bytes())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    r = transcribe(str(tmp_path / "audio-{000000..000000}.tar"), tmp_path / "h1", name="wds")
    assert r["outcomes"] == {"kept": 2, "decode_error": 1}  # c has no reference: still transcribed and kept

    http_server["files"]["clip05.ogg"] = (SPEECH_DIR / "clip05.ogg").read_bytes()
    base = http_server["base"]
    pq.write_table(pa.table({"audio": [str(SPEECH_DIR / "clip03.flac"), f"{base}/img/clip05.ogg", f"{base}/status/404"],
                             "transcript": [(SPEECH_DIR / "clip03.txt").read_text(), None, "lost"]}),
                   tmp_path / "clips.parquet")
    refused = transcribe(str(tmp_path / "clips.parquet"), tmp_path / "h1", name="table")
    assert refused["outcomes"]["path_refused"] == 1  # a path outside the table's folder needs an allowed root
    r = transcribe(str(tmp_path / "clips.parquet"), tmp_path / "h2", name="table", allowed_roots=[str(SPEECH_DIR)])
    assert r["outcomes"] == {"kept": 2, "fetch_failed": 1} and r["wer"]["with_reference"] == 1

    from datasets import Audio, Dataset

    ds = Dataset.from_dict({"audio": [{"bytes": clip, "path": None}], "text": [ref]})
    ds = ds.cast_column("audio", Audio(decode=False))  # an Audio column, stored as {bytes, path}
    ds.save_to_disk(str(tmp_path / "hf"))
    r = transcribe(str(tmp_path / "hf"), tmp_path / "h3", name="hf")
    assert r["kept"] == 1 and r["wer"]["mean_wer"] < 0.4


def test_cli_offline_default_model_is_a_plain_error(prefect_harness, home):
    from mmpipe.cli import app

    out = CliRunner().invoke(app, ["transcribe", str(SPEECH_DIR), "--name", "x", "--home", str(home)])
    assert out.exit_code == 1 and "tiny.en" in out.output and "Traceback" not in out.output
