"""The standing suite of hostile inputs (issue 22): bombs end within their budgets with recorded
reasons, a trickling server within its deadline, every tar member is accounted for. Sizes are small
and budgets set low; runtimes are bounded by generous ceilings only."""

from __future__ import annotations

import gzip
import io
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pytest

from mmpipe.sources import SourceSpec, plan_shards, read_shard

MiB = 1024 * 1024


def _tgz(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _read_all(spec: SourceSpec) -> tuple[pa.Table, list]:
    got = [read_shard(spec, s, "t") for s in plan_shards(spec)]
    return pa.concat_tables([g[0] for g in got]), [g[1] for g in got]


def test_a_tar_bomb_stops_at_the_tar_budget_with_a_recorded_reason(tmp_path):
    members = {}
    for i in range(6):  # 6 x 8 MiB of zeros: a few KB on disk, each under the per-member cap
        members[f"{i}.jpg"] = b"\xff\xd8\xff" + bytes(8 * MiB)
        members[f"{i}.txt"] = f"a caption {i}".encode()
    tar = _tgz(tmp_path / "bomb.tar.gz", members)
    assert tar.stat().st_size < MiB
    batch, errors = _read_all(SourceSpec(str(tar), max_tar_bytes=20 * MiB))
    reasons = dict(zip(batch["source_key"].to_pylist(), batch["drop_reason"].to_pylist()))
    assert reasons["bomb.tar.gz/0"] is None and reasons["bomb.tar.gz/1"] is None
    assert reasons["bomb.tar.gz/2"] == "budget_exceeded" and len(reasons) == 3
    assert "tar's decompressed-bytes budget of 20.0 MiB" in errors[0]
    assert "tar's decompressed-bytes budget" in batch["drop_detail"].to_pylist()[2]


def test_the_default_tar_budget_is_a_multiple_of_the_size_on_disk(tmp_path):
    from mmpipe.sources.budget import MAX_EXPANSION, MIN_TAR_BUDGET

    n = MIN_TAR_BUDGET // (16 * MiB) + 2  # zeros that expand past the floor and far past 100x the file
    tar = _tgz(tmp_path / "bomb.tgz", {f"{i}.wav": bytes(16 * MiB) for i in range(n)})
    assert tar.stat().st_size * MAX_EXPANSION < MIN_TAR_BUDGET
    batch, errors = _read_all(SourceSpec(str(tar), modality="audio"))
    assert batch["drop_reason"].to_pylist()[-1] == "budget_exceeded" and "budget" in errors[0]
    assert batch.num_rows < n


def test_tars_share_the_run_budget(tmp_path):
    (tmp_path / "shards").mkdir()
    for s in range(3):
        _tgz(tmp_path / "shards" / f"{s}.tar.gz", {f"{s}-{i}.jpg": bytes(4 * MiB) for i in range(2)} |
             {f"{s}-{i}.txt": b"a red square" for i in range(2)})
    spec = SourceSpec(str(tmp_path / "shards"), max_run_bytes=18 * MiB)
    batch, errors = _read_all(spec)
    assert errors[0] is None and errors[1] is None and "run's decompressed-bytes budget" in errors[2]
    assert batch["drop_reason"].to_pylist().count("budget_exceeded") == 1
    again, errors = _read_all(spec)  # a new run (planned again) starts its budget afresh
    assert again["drop_reason"].to_pylist() == batch["drop_reason"].to_pylist()


def test_every_tar_member_linked_or_not_is_an_occurrence_with_an_outcome(tmp_path):
    path = tmp_path / "links.tar"
    with tarfile.open(path, "w") as tf:
        for name, kind in (("lone.jpg", tarfile.SYMTYPE), ("dev.jpg", tarfile.CHRTYPE), ("pair.jpg", tarfile.LNKTYPE),
                           ("fifo.flac", tarfile.FIFOTYPE)):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd"
            tf.addfile(info)
        info = tarfile.TarInfo("pair.txt")
        info.size = 12
        tf.addfile(info, io.BytesIO(b"a red square"))
    batch, errors = _read_all(SourceSpec(str(path)))
    got = dict(zip(batch["source_key"].to_pylist(), zip(batch["drop_reason"].to_pylist(),
                                                         batch["drop_detail"].to_pylist())))
    assert got == {"links.tar/lone": ("not_a_file", "lone.jpg: symlink"),
                   "links.tar/dev": ("not_a_file", "dev.jpg: character device"),
                   "links.tar/pair": ("not_a_file", "pair.jpg: hard link"),
                   "links.tar/fifo": ("not_a_file", "fifo.flac: fifo")}
    assert errors == [None]


BILLION_LAUGHS = "\n".join(["a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]"] +
                           [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)] +
                           ["name: *i"])


def test_a_billion_laughs_recipe_is_refused_at_once(tmp_path):
    from mmpipe.recipe import RecipeError, load_recipe

    (tmp_path / "bomb.yaml").write_text(BILLION_LAUGHS)
    start = time.monotonic()
    with pytest.raises(RecipeError, match=r"aliases \(\*name\) are not allowed"):
        load_recipe(tmp_path / "bomb.yaml")
    assert time.monotonic() - start < 60  # a ceiling only: expanding it would take minutes and gigabytes
    (tmp_path / "big.yaml").write_text("name: x\n" + "# padding\n" * 200_000)
    with pytest.raises(RecipeError, match="larger than 1024 KiB"):
        load_recipe(tmp_path / "big.yaml")


def test_a_recipe_is_validated_fully_in_one_line_before_anything_starts(tmp_path):
    from mmpipe.recipe import RecipeError, load_recipe

    (tmp_path / "r.yaml").write_text("name: x\nsource: /data\nbasic:\n  min_side: big\n  max_aspect_ratio: yes\n"
                                     "dedup:\n  exact: 'no'\nclip:\n  workers: 2.5\nsource_typo: 1\n")
    with pytest.raises(RecipeError, match="unknown setting.*source_typo"):
        load_recipe(tmp_path / "r.yaml")
    (tmp_path / "r.yaml").write_text("name: x\nsource: /data\nbasic:\n  min_side: big\n  max_aspect_ratio: yes\n"
                                     "dedup:\n  exact: 'no'\nclip:\n  workers: 2.5\nsource_typo: 1\n".replace(
                                         "source_typo: 1\n", "semantic_dedup:\n  clusters: many\n"))
    with pytest.raises(RecipeError) as got:
        load_recipe(tmp_path / "r.yaml")
    line = str(got.value)
    assert "\n" not in line
    for wrong in ("basic.min_side must be an integer, got 'big'", "basic.max_aspect_ratio must be a number, got True",
                  "dedup.exact must be true or false, got 'no'", "clip.workers must be an integer, got 2.5",
                  "semantic_dedup.clusters must be an integer or null, got 'many'"):
        assert wrong in line
    (tmp_path / "d.yaml").write_text('name: x\nsource: /data\ndedup: "yes"\n')
    with pytest.raises(RecipeError, match=r"dedup is a section of settings \(exact, hamming\), got 'yes'"):
        load_recipe(tmp_path / "d.yaml")


def test_a_wrong_recipe_fails_from_the_command_line_before_prefect_starts(tmp_path):
    from typer.testing import CliRunner

    from mmpipe.cli import app

    (tmp_path / "r.yaml").write_text(f"name: x\nsource: {tmp_path}\nbasic:\n  min_side: big\n")
    start = time.monotonic()
    out = CliRunner().invoke(app, ["curate", "--config", str(tmp_path / "r.yaml"), "--home", str(tmp_path / "h")])
    assert out.exit_code == 1 and len(out.output.strip().splitlines()) == 1
    assert "basic.min_side must be an integer" in out.output
    assert not (tmp_path / "h").exists()  # nothing started: no home, no Prefect server
    assert time.monotonic() - start < 60


@pytest.fixture
def header_trickler():
    """A loopback server that sends its status line and headers one byte every 0.2 s for up to 60 s."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            head = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 400 + b"\r\nContent-Length: 1\r\n\r\nx"
            try:
                for byte in head:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass  # the client gave up: what it should do

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_trickled_response_headers_end_at_the_fetch_deadline(header_trickler):
    from mmpipe.sources.fetch import FetchConfig, fetch_all

    start = time.monotonic()
    got = fetch_all([f"{header_trickler}/a.jpg", f"{header_trickler}/b.jpg"],
                    FetchConfig(timeout_s=5, deadline_s=1.5, retries=2, backoff_s=0.1))
    assert got == [(None, "timeout"), (None, "timeout")]
    assert time.monotonic() - start < 30  # a ceiling: the server would trickle for over a minute per attempt


def _corrupt_parquet(tmp_path):
    import pyarrow.parquet as pq
    from PIL import Image

    for i in range(50):
        Image.new("RGB", (64, 64), (i * 5, 100, 200 - i * 3)).save(tmp_path / f"{i}.png")
    pq.write_table(pa.table({"url": [f"{i}.png" for i in range(50)],
                             "caption": [f"a picture number {i} " * 10 for i in range(50)]}),
                   tmp_path / "t.parquet", row_group_size=20, compression="none")
    data = bytearray((tmp_path / "t.parquet").read_bytes())
    for i in range(300, 1500):  # inside the first row group's pages; the footer stays intact
        data[i] ^= 0x5A
    (tmp_path / "bad.parquet").write_bytes(bytes(data))
    return tmp_path / "bad.parquet"


def test_a_corrupt_row_group_loses_exactly_its_rows(tmp_path):
    spec = SourceSpec(str(_corrupt_parquet(tmp_path)), shard_size=512)  # all three row groups in one shard
    batch, errors = _read_all(spec)
    assert batch.num_rows == 50
    reasons = batch["drop_reason"].to_pylist()
    assert reasons[:20] == ["unreadable_rows"] * 20 and "unreadable_rows" not in reasons[20:]
    assert batch["drop_detail"].to_pylist()[0].startswith("rows 0-19 of bad.parquet (row group 0)")
    assert "rows 0-19 of bad.parquet" in errors[0]


def test_a_run_over_a_corrupt_row_group_ends_with_warnings_and_counts_every_row(prefect_harness, tmp_path):
    from flows.curate import curate_flow
    from warehouse import Warehouse

    path = _corrupt_parquet(tmp_path)
    result = curate_flow(str(path), "rg", home=str(tmp_path / "home"), clip_model="none", min_side=32,
                         dedup_hamming=None)
    assert result["ingested"] == 50 and result["outcomes"]["unreadable_rows"] == 20
    wh = Warehouse(tmp_path / "home")
    assert wh.sql("SELECT status FROM runs").column("status").to_pylist() == ["completed_with_warnings"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_endless_table_line_is_a_recorded_row_not_a_memory_bomb(tmp_path, monkeypatch, fmt):
    import mmpipe.sources.table as table
    from PIL import Image

    monkeypatch.setattr(table, "MAX_LINE_BYTES", 4096)
    Image.new("RGB", (64, 64), (200, 10, 10)).save(tmp_path / "a.png")
    huge = "x" * 50_000
    if fmt == "csv":
        body = f'url,caption\na.png,a red square\na.png,{huge}\na.png,"{huge}"\na.png,the last one\n'
    else:
        body = "".join(f'{{"url": "a.png", "caption": "{c}"}}\n' for c in ("a red square", huge, "the last one"))
    (tmp_path / f"t.{fmt}").write_text(body)
    batch, errors = _read_all(SourceSpec(str(tmp_path / f"t.{fmt}")))
    reasons = batch["drop_reason"].to_pylist()
    assert reasons[0] is None and reasons[-1] is None and errors == [None] * len(errors)
    assert set(reasons[1:-1]) == {"bad_metadata"} and batch.num_rows == (4 if fmt == "csv" else 3)
    assert batch["text"].to_pylist()[-1] == "the last one"


def test_audio_declared_too_long_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    import wave

    import faster_whisper

    from mmpipe.stages.audio_decode import AudioDecodeConfig, AudioDecodeError, decode_clip

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(b"\x80" * 8000 * 12)
    decoded = []
    real = faster_whisper.decode_audio
    monkeypatch.setattr(faster_whisper, "decode_audio", lambda *a, **k: decoded.append(1) or real(*a, **k))
    with pytest.raises(AudioDecodeError) as got:
        decode_clip(buf.getvalue(), AudioDecodeConfig(max_duration_s=5))
    assert got.value.reason == "too_long" and "declared" in str(got.value) and not decoded
