"""WebDataset tar shards in and out: the ONE tar reader, the ONE shard-pattern expander and the ONE
atomic tar writer. Every module that reads or writes shards goes through here.

Grouping members into samples (`__key__` plus one entry per extension), writing samples and the
shuffle the training stream uses are webdataset's own (`webdataset.tariterators.group_by_keys`,
`webdataset.TarWriter`, `webdataset.filters.shuffle`). What webdataset cannot do is bound a member
before reading it: its `tar_file_iterator` reads every regular member whole and skips links and
devices unseen. So the member loop below is ours: it looks at each header first (type, size,
decompressed-bytes budget), reads only what passes, and hands webdataset's file records
({"fname", "data", "__url__"}) on to its grouping.
"""

from __future__ import annotations

import logging
import os
import tarfile  # the one module that touches tar headers: webdataset cannot check a member before reading it
import time
import zlib
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

from braceexpand import braceexpand

from mmpipe.sources.budget import BudgetExceeded, TarBudget

log = logging.getLogger(__name__)

TAR_SUFFIXES = (".tar", ".tgz", ".tar.gz")
MAX_MEMBER_BYTES = 256 * 1024 * 1024
NOT_A_FILE = "not_a_file"  # a member that is a link, device, fifo: accounted for, never followed
BUDGET_EXCEEDED = "budget_exceeded"


class Refused(NamedTuple):
    """A member left unread, in place of its bytes: why (a drop reason) and a detail."""

    reason: str
    detail: str


_KINDS = {tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hard link", tarfile.CHRTYPE: "character device",
          tarfile.BLKTYPE: "block device", tarfile.FIFOTYPE: "fifo"}


# -- shard patterns ---------------------------------------------------------------------------------
def expand_shards(shards: str | Path | Sequence[str | Path], must_exist: bool = False) -> list[str]:
    """Shard paths from a path, a folder of tars, brace patterns like shard-{000..009}.tar, or a
    list of these (an empty list is a ValueError). With must_exist, a missing shard is a
    FileNotFoundError; a folder without tars gives no paths."""
    items = [shards] if isinstance(shards, (str, Path)) else list(shards)
    if not items:
        raise ValueError("no shards given")
    out: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += sorted(str(x) for x in p.iterdir() if x.name.endswith(TAR_SUFFIXES))
        else:
            out += braceexpand(str(item))
    if must_exist:
        missing = [x for x in out if not Path(x).is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} shard(s) not found, e.g. {missing[0]}")
    return out


# -- reading ----------------------------------------------------------------------------------------
def split_name(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is the path up to the first dot of the base name (the extension,
    lower-cased, is the rest); a name without a dot is a key with an empty extension."""
    slash = name.rfind("/")
    dot = name.find(".", slash + 1)
    return (name, "") if dot < 0 else (name[:dot], name[dot + 1:])


def _has_end_marker(path: Path, offset: int) -> bool:
    """An uncompressed tar ends with two zero blocks after its last member; a cut-off one does not."""
    with path.open("rb") as f:
        if f.read(2) == b"\x1f\x8b":
            return True  # gzip: a truncated stream already raised
        f.seek(offset)
        tail = f.read(1024)
    return len(tail) == 1024 and not tail.strip(b"\x00")


def _skip_duplicate(exn: Exception) -> bool:
    """group_by_keys' handler: a second member of the same name in one sample is left out."""
    log.warning("tar member left out: %s", exn.args[0] if exn.args else exn)
    return True


class TarSamples:
    """The samples of one WebDataset tar, streamed: {'__key__', '__url__', ext: bytes, ...}.

    A member over `max_member_bytes` (None: no cap) stands as its size (an int), unread; a link,
    device or fifo as Refused(NOT_A_FILE, kind); the member that would pass `budget` as
    Refused(BUDGET_EXCEEDED, why), after which reading stops. Members whose base name starts with
    '.' or '_' and directories are skipped, and so are members whose name `select` refuses (unread,
    like webdataset's select_files). After the loop, `error` says why reading stopped early
    (a broken or truncated tar, or the budget), None when the whole tar was read.
    """

    def __init__(self, path: str | Path, max_member_bytes: int | None = MAX_MEMBER_BYTES,
                 budget: TarBudget | None = None, select: Callable[[str], bool] | None = None):
        self.path = Path(path)
        self.max_member_bytes, self.budget, self.select = max_member_bytes, budget, select
        self.error: str | None = None

    def __iter__(self) -> Iterator[dict]:
        from webdataset.tariterators import group_by_keys  # webdataset imports torch: not at `import mmpipe`

        self.error = None
        return group_by_keys(self._files(), keys=split_name, handler=_skip_duplicate)

    def _files(self) -> Iterator[dict]:
        url = str(self.path)
        cap = self.max_member_bytes

        def record(name: str, data) -> dict:
            return {"fname": name, "data": data, "__url__": url}

        try:
            with self.path.open("rb") as f, tarfile.open(fileobj=f, mode="r|*") as tf:
                for member in tf:
                    tf.members = []  # streaming: keep no headers (as webdataset does)
                    if member.isdir():
                        continue
                    if member.name.rpartition("/")[2].startswith((".", "_")):  # hidden, or metadata
                        continue
                    if self.select is not None and not self.select(member.name):
                        continue
                    if not member.isfile():
                        yield record(member.name, Refused(NOT_A_FILE, _KINDS.get(member.type, "special member")))
                        continue
                    try:
                        if self.budget is not None:
                            self.budget.charge(member.size)  # streaming past a skipped member decompresses it too
                    except BudgetExceeded as e:
                        yield record(member.name, Refused(BUDGET_EXCEEDED, str(e)))
                        self.error = f"stopped reading: the next member would pass {e}; members after it were not read"
                        return
                    if cap is not None and member.size > cap:
                        yield record(member.name, member.size)  # skipped unread; streamed past
                        continue
                    yield record(member.name, tf.extractfile(member).read())
                end = tf.offset
            if not _has_end_marker(self.path, end):
                self.error = ("the tar ends without its end-of-archive marker (truncated?); "
                              "members after the cut were not read")
        except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error) as e:
            self.error = f"broke off while reading ({type(e).__name__}: {e}); samples after the break were not read"


def tar_samples(path: str | Path, max_member_bytes: int | None = MAX_MEMBER_BYTES, budget: TarBudget | None = None,
                select: Callable[[str], bool] | None = None) -> TarSamples:
    """The samples of one tar (see TarSamples; its `error` is set once the loop ends)."""
    return TarSamples(path, max_member_bytes, budget, select)


def members(sample: dict) -> dict:
    """The members of a sample: {ext: bytes, or an int / Refused for a member left unread}."""
    return {k: v for k, v in sample.items() if not k.startswith("__")}


# -- writing ----------------------------------------------------------------------------------------
def _check_key(key: str) -> str:
    """A key that stays inside the folder a tar is extracted to (no absolute path, no '..')."""
    if not key or key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"refusing to write tar member key {key!r}: it would escape the folder it is extracted to")
    return key


def write_tar_atomic(path: str | Path, samples: Iterable[dict]) -> int:
    """Write samples ({'__key__': key, ext: bytes, ...}; members key.ext in sorted ext order) to a tar
    under a temp name, then rename; returns the number of samples."""
    from webdataset import TarWriter

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    try:
        with tmp.open("wb") as f, TarWriter(f, encoder=False, mode=0o644, user="", group="", mtime=time.time()) as tw:
            for sample in samples:
                _check_key(sample["__key__"])
                tw.write(sample)
                n += 1
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return n


def read_archive(path: str | Path, max_member_bytes: int = MAX_MEMBER_BYTES) -> dict[str, bytes]:
    """Every regular file of a plain archive (.tar or .tar.gz, such as a shipped data set) by member name;
    links, devices and members over `max_member_bytes` are left out, and a name that is absolute or climbs
    out (`..`) is refused."""
    out = {}
    with tarfile.open(path) as tf:
        for member in tf:
            if not member.isfile() or member.size > max_member_bytes:
                continue
            if member.name.startswith("/") or ".." in Path(member.name).parts:
                raise ValueError(f"{path}: member {member.name!r} would land outside its folder")
            out[member.name] = tf.extractfile(member).read()
    return out


def write_archive(path: str | Path, files: dict[str, bytes]) -> None:
    """A reproducible .tar.gz of `files` (name -> bytes) in their order: USTAR headers, times and owners zero,
    so the same files give the same bytes."""
    import gzip
    import io

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tf.addfile(info, io.BytesIO(data))
    Path(path).write_bytes(gzip.compress(raw.getvalue(), compresslevel=9, mtime=0))
