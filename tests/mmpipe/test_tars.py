"""The one tar reader, shard-pattern expander and atomic writer (mmpipe/sources/tars.py, on webdataset)."""

from __future__ import annotations

import ast
import io
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from mmpipe.sources.budget import TarBudget
from mmpipe.sources.tars import NOT_A_FILE, Refused, expand_shards, members, tar_samples, write_tar_atomic

ROOT = Path(__file__).resolve().parents[2]


def _jpeg(color: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(buf, "JPEG")
    return buf.getvalue()


def test_the_reader_reads_what_the_writer_wrote(tmp_path):
    samples = [{"__key__": f"{i:04d}", "jpg": _jpeg(c), "txt": f"a {c} square".encode(), "json": b'{"i": %d}' % i}
               for i, c in enumerate(["red", "green", "blue"])]
    assert write_tar_atomic(tmp_path / "s.tar", samples) == 3
    assert not list(tmp_path.glob("*.tmp"))
    reader = tar_samples(tmp_path / "s.tar")
    got = list(reader)
    assert reader.error is None
    assert [s["__key__"] for s in got] == ["0000", "0001", "0002"]
    assert [members(s) for s in got] == [{k: v for k, v in s.items() if k != "__key__"} for s in samples]
    assert Image.open(io.BytesIO(got[2]["jpg"])).getpixel((8, 6))[2] > 200
    # webdataset itself reads our shards unmodified
    import webdataset as wds

    assert [s["txt"] for s in wds.WebDataset(str(tmp_path / "s.tar"), shardshuffle=False)] == \
        [s["txt"] for s in samples]


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    def samples():
        yield {"__key__": "a", "txt": b"x"}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_tar_atomic(tmp_path / "s.tar", samples())
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("key", ["../escape", "/abs/path", "a/../../b", ""])
def test_the_writer_refuses_a_key_that_escapes(tmp_path, key):
    with pytest.raises(ValueError, match="escape|refusing"):
        write_tar_atomic(tmp_path / "s.tar", [{"__key__": key, "txt": b"x"}])
    assert not (tmp_path / "s.tar").exists()


def _raw_tar(path: Path, entries) -> Path:
    """Hostile input, crafted by hand on purpose (the writer would refuse it)."""
    with tarfile.open(path, "w") as tf:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "/etc/passwd"
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def test_caps_refuse_oversized_members_links_and_budget_and_never_let_a_name_escape(tmp_path):
    path = _raw_tar(tmp_path / "h.tar", [
        ("big.jpg", b"x" * 5000, tarfile.REGTYPE), ("big.txt", b"ok", tarfile.REGTYPE),
        ("../../etc/evil.jpg", b"y" * 10, tarfile.REGTYPE), ("link.jpg", b"", tarfile.SYMTYPE),
        (".hidden.jpg", b"z", tarfile.REGTYPE), ("_meta.json", b"{}", tarfile.REGTYPE)])
    reader = tar_samples(path, max_member_bytes=1000)
    got = {s["__key__"]: members(s) for s in reader}
    assert reader.error is None
    assert got["big"] == {"jpg": 5000, "txt": b"ok"}  # over the cap: its size, unread
    assert got["link"] == {"jpg": Refused(NOT_A_FILE, "symlink")}
    assert "../../etc/evil" in got and set(got) == {"big", "../../etc/evil", "link"}  # a key, never a path
    # the sources reader turns these into drop reasons and keeps every key under the tar's name
    from mmpipe.sources.webdataset import tar_batch

    batch, error = tar_batch(str(path), "t", max_member_bytes=1000)
    rows = {r["source_key"]: r for r in batch.to_pylist()}
    assert rows["h.tar/big"]["drop_reason"] == "file_too_large"
    assert rows["h.tar/link"]["drop_reason"] == "not_a_file"
    assert all(k.startswith("h.tar/") for k in rows)
    # the decompressed-bytes budget stops reading at the member that would pass it
    budget = TarBudget(limit=3000, run_key=object(), run_limit=10**9)
    reader = tar_samples(path, budget=budget)
    got = list(reader)
    assert got[0]["jpg"].reason == "budget_exceeded" and "budget" in reader.error


def test_a_truncated_tar_keeps_what_came_before_and_says_so(tmp_path):
    write_tar_atomic(tmp_path / "s.tar", [{"__key__": f"{i}", "txt": b"t" * 3000} for i in range(4)])
    data = (tmp_path / "s.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: len(data) // 2])
    reader = tar_samples(tmp_path / "cut.tar")
    got = list(reader)
    assert 1 <= len(got) < 4 and reader.error


def test_shard_patterns_expand(tmp_path):
    for i in range(3):
        write_tar_atomic(tmp_path / f"s-{i}.tar", [{"__key__": "a", "txt": b"x"}])
    assert expand_shards(str(tmp_path / "s-{0..2}.tar"), must_exist=True) == [str(tmp_path / f"s-{i}.tar")
                                                                              for i in range(3)]
    assert expand_shards(tmp_path) == [str(tmp_path / f"s-{i}.tar") for i in range(3)]
    assert expand_shards(["a.tar", "b-{1..2}.tar"]) == ["a.tar", "b-1.tar", "b-2.tar"]
    with pytest.raises(FileNotFoundError):
        expand_shards(str(tmp_path / "s-{0..3}.tar"), must_exist=True)
    with pytest.raises(ValueError):
        expand_shards([])


def test_only_the_one_reader_imports_tarfile():
    """No module of the library, tasks or flows reads or writes tar members by hand."""
    allowed = {"mmpipe/sources/tars.py"}  # webdataset cannot check a member's header before reading it
    offenders = []
    for folder in ("mmpipe", "tasks", "flows"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
            rel = path.relative_to(ROOT).as_posix()
            if "tarfile" in names and rel not in allowed:
                offenders.append(rel)
    assert not offenders, f"tar members read or written by hand in {offenders}: use mmpipe.sources.tars"


def test_a_plain_archive_reads_its_files_and_refuses_a_member_that_climbs_out(tmp_path):
    import io
    import tarfile

    from mmpipe.sources.tars import read_archive, write_archive

    write_archive(tmp_path / "a.tar.gz", {"b.txt": b"bee", "sub/c.bin": b"\0" * 10})
    assert read_archive(tmp_path / "a.tar.gz") == {"b.txt": b"bee", "sub/c.bin": b"\0" * 10}
    first = (tmp_path / "a.tar.gz").read_bytes()
    write_archive(tmp_path / "a.tar.gz", {"b.txt": b"bee", "sub/c.bin": b"\0" * 10})
    assert (tmp_path / "a.tar.gz").read_bytes() == first  # reproducible
    with tarfile.open(tmp_path / "evil.tar", "w") as tf:
        for name, kind in (("../escape.txt", tarfile.REGTYPE), ("link", tarfile.SYMTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.size = kind, 3 if kind == tarfile.REGTYPE else 0
            info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            tf.addfile(info, io.BytesIO(b"bad") if kind == tarfile.REGTYPE else None)
    with pytest.raises(ValueError, match="outside"):
        read_archive(tmp_path / "evil.tar")
    assert not (tmp_path.parent / "escape.txt").exists()
