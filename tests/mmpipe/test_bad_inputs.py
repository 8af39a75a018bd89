"""Bad and hostile inputs through the sources: each gets a drop reason with a detail, nothing else is lost."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmpipe.schema import DROP_REASONS
from mmpipe.sources import SourceSpec, plan_shards, read_shard
from mmpipe.stages.decode import DecodeImages, decode_image, sniff_format
from mmpipe.schema import batch_from_rows

BAD = "caf\xe9 au lait".encode("latin-1")  # not UTF-8


def _jpeg(color=(200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buf, "JPEG")
    return buf.getvalue()


def _read(spec: SourceSpec) -> pa.Table:
    return pa.concat_tables([read_shard(spec, s, "t")[0] for s in plan_shards(spec)])


def _reasons(batch: pa.Table) -> dict[str, str | None]:
    return dict(zip(batch["source_key"].to_pylist(), batch["drop_reason"].to_pylist()))


def _tar(path, members: dict[str, bytes]):
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_one_rule_for_captions_that_are_not_utf8_in_every_source(tmp_path):
    img = _jpeg()
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(img)
    (folder / "a.txt").write_bytes(BAD)
    (folder / "b.jpg").write_bytes(_jpeg((0, 0, 200)))
    (folder / "b.txt").write_text("a blue square")
    tar = _tar(tmp_path / "s.tar", {"a.jpg": img, "a.txt": BAD, "b.jpg": img, "b.txt": b"a red square",
                                    "c.jpg": img, "c.txt": b"a red one", "c.json": b"{not json"})
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(img)
    csv_path = tmp_path / "list.csv"
    csv_path.write_bytes(b"url,caption\nimgs/a.jpg," + BAD + b"\nimgs/a.jpg,plain ascii caption\n")
    jsonl = tmp_path / "list.jsonl"
    jsonl.write_bytes(b'{"url": "imgs/a.jpg", "caption": "' + BAD + b'"}\n'
                      b'{"url": "imgs/a.jpg", "caption": "plain ascii caption"}\n{broken json\n')
    got = {
        "folder": _reasons(_read(SourceSpec(str(folder)))),
        "tar": _reasons(_read(SourceSpec(str(tar)))),
        "csv": _reasons(_read(SourceSpec(str(csv_path)))),
        "jsonl": _reasons(_read(SourceSpec(str(jsonl)))),
    }
    assert got["folder"] == {"a.jpg": "caption_encoding", "b.jpg": None}
    assert got["tar"] == {"s.tar/a": "caption_encoding", "s.tar/b": None, "s.tar/c": "bad_metadata"}
    assert got["csv"] == {"list.csv:0": "caption_encoding", "list.csv:1": None}
    assert got["jsonl"] == {"list.jsonl:0": "caption_encoding", "list.jsonl:1": None, "list.jsonl:2": "bad_metadata"}
    csv_batch = _read(SourceSpec(str(csv_path)))
    assert csv_batch["text"].to_pylist()[1] == "plain ascii caption"  # one bad row never corrupts the others


def test_each_table_is_parsed_once_however_many_shards(tmp_path, monkeypatch):
    import mmpipe.sources.table as table

    (tmp_path / "a.jpg").write_bytes(_jpeg())
    path = tmp_path / "big.csv"
    path.write_text("url,caption\n" + "".join(f"a.jpg,caption number {i}\n" for i in range(1000)))
    calls = {"records": 0}
    real = table._records

    def counting(*a, **kw):
        calls["records"] += 1
        return real(*a, **kw)

    monkeypatch.setattr(table, "_records", counting)
    spec = SourceSpec(str(path), shard_size=100)
    shards = plan_shards(spec, tmp_path / "parts")
    batch = pa.concat_tables([read_shard(spec, s, "t")[0] for s in shards])
    assert len(shards) == 10 and calls["records"] == 1
    assert batch.num_rows == 1000 and batch["source_key"][999].as_py() == "big.csv:999"
    pq.write_table(pa.table({"url": ["a.jpg"] * 1000, "caption": [f"c {i}" for i in range(1000)]}),
                   tmp_path / "big.parquet", row_group_size=250)
    reads = []
    real_group = pq.ParquetFile.read_row_group  # each row group read once, on its own
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", lambda self, g, **kw: reads.append((g,)) or
                        real_group(self, g, **kw))
    spec = SourceSpec(str(tmp_path / "big.parquet"), shard_size=100)
    batch = pa.concat_tables([read_shard(spec, s, "t")[0] for s in plan_shards(spec)])
    assert batch.num_rows == 1000 and sorted(g for r in reads for g in r) == [0, 1, 2, 3]


def test_table_paths_are_confined_to_the_tables_folder_and_capped(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok.jpg").write_bytes(_jpeg())
    (data / "big.jpg").write_bytes(_jpeg() + b"\0" * 5000)
    os.symlink("/etc/hostname", data / "sneaky.jpg")
    rows = ["ok.jpg", "/dev/zero", "/etc/passwd", "../../etc/hostname", "sneaky.jpg", "big.jpg", "file:///etc/passwd",
            "missing.jpg"]
    pq.write_table(pa.table({"url": rows, "caption": [f"row {i} caption" for i in range(len(rows))]}),
                   data / "t.parquet")
    spec = SourceSpec(str(data / "t.parquet"), max_file_bytes=4000)
    batch = _read(spec)
    assert batch["drop_reason"].to_pylist() == [None, "path_refused", "path_refused", "path_refused", "path_refused",
                                                "file_too_large", "path_refused", "missing_file"]
    allowed = _read(SourceSpec(str(data / "t.parquet"), allowed_roots=("/dev",)))
    assert allowed["drop_reason"].to_pylist()[1] == "read_error"  # a device is never read
    assert allowed["drop_detail"].to_pylist()[1] == "not a regular file"


def test_tar_members_over_the_cap_are_skipped_unread(tmp_path):
    big = b"\xff\xd8\xff" + b"\0" * 200_000
    path = _tar(tmp_path / "s.tar", {"a.jpg": _jpeg(), "a.txt": b"a red square", "b.jpg": big, "b.txt": b"huge one"})
    batch = _read(SourceSpec(str(path), max_member_bytes=100_000))
    assert _reasons(batch) == {"s.tar/a": None, "s.tar/b": "file_too_large"}
    assert "200003 bytes" in batch["drop_detail"].to_pylist()[1]


def test_avif_decodes_and_heic_is_named():
    buf = io.BytesIO()
    Image.new("RGB", (80, 60), (10, 200, 10)).save(buf, "AVIF")
    assert sniff_format(buf.getvalue()) == "AVIF"
    img, fmt = decode_image(buf.getvalue())
    assert fmt == "avif" and img.size == (80, 60)
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\0" * 64
    out = DecodeImages()(batch_from_rows([{"sample_id": "h", "content": heic, "text": "a photo", "keep": True}]))
    assert out["drop_reason"][0].as_py() == "unsupported_format" and out["drop_detail"][0].as_py() == "heif/heic"


def test_every_reason_a_source_gives_is_in_the_vocabulary():
    with pytest.raises(ValueError, match="vocabulary"):
        batch_from_rows([{"sample_id": "x", "keep": False, "drop_reason": "duplicate_of:abc"}])
    assert all(" " not in r and ":" not in r for r in DROP_REASONS)


def test_fetch_refuses_redirects_to_other_schemes_and_bounds_a_trickle(tmp_path):
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from mmpipe.sources.fetch import FetchConfig, fetch_all

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "file:///etc/passwd")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", "3000")
            self.end_headers()
            try:
                for _ in range(3000):  # a byte every 0.2 s for 10 min: never idle long enough for a read timeout
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    start = time.monotonic()
    got = fetch_all([f"{base}/redirect", f"{base}/trickle"], FetchConfig(timeout_s=1, deadline_s=1.5, retries=0))
    assert [g[1] for g in got] == ["redirect_refused", "timeout"]
    assert time.monotonic() - start < 300  # the deadline ended it, not the 10-min trickle (generous when busy)
    server.shutdown()


def test_a_corrupt_img2dataset_parquet_does_not_lose_the_tar(tmp_path):
    _tar(tmp_path / "00000.tar", {"0.jpg": _jpeg(), "0.txt": b"a red square"})
    (tmp_path / "00000.parquet").write_bytes(b"PAR1" + os.urandom(200) + b"PAR1")
    batch, error = read_shard(SourceSpec(str(tmp_path)), plan_shards(SourceSpec(str(tmp_path)))[0], "t")
    assert batch.num_rows == 1 and batch["keep"][0].as_py() and "unreadable" in error
    assert "samples were all read" in error and "not read" not in error  # the warning tells the truth
    assert json.loads(json.dumps(error))  # a plain message, recorded as the run's warning


def test_a_parquet_with_flipped_bytes_is_a_named_error_not_a_traceback(tmp_path):
    (tmp_path / "a.jpg").write_bytes(_jpeg())
    pq.write_table(pa.table({"url": ["a.jpg"] * 50, "caption": [f"caption {i} " * 20 for i in range(50)]}),
                   tmp_path / "t.parquet", row_group_size=25, compression="none")
    data = bytearray((tmp_path / "t.parquet").read_bytes())
    for i in range(200, 1200):  # inside the first row group's pages; the footer stays intact
        data[i] ^= 0x5A
    (tmp_path / "bad.parquet").write_bytes(bytes(data))
    spec = SourceSpec(str(tmp_path / "bad.parquet"), shard_size=20)  # one row group per shard
    shards = plan_shards(spec)
    results = [read_shard(spec, s, "t") for s in shards]
    errors = [e for _, e in results if e]
    assert errors and "bad.parquet" in errors[0] and "rows 0-24" in errors[0]
    assert sum(b.num_rows for b, _ in results) == 50  # the other row group is read; the lost rows are recorded
    assert results[0][0]["drop_reason"].to_pylist() == ["unreadable_rows"] * 25
    (tmp_path / "footer.parquet").write_bytes(bytes(data[:-20]) + b"\x00" * 16 + b"PAR1")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        plan_shards(SourceSpec(str(tmp_path / "footer.parquet")))
