"""Speech shards with the standard tools: FFmpeg for torchcodec (what `datasets` decodes audio with) and a
`webdataset` decoder that needs nothing beyond the installed packages.

`datasets.load_dataset` reads a speech version (its folder, or its shards with the webdataset builder)
into an `Audio` column; decoding a row goes through torchcodec, which loads FFmpeg's shared libraries
(major versions 4 to 9) at that moment. A machine with a system FFmpeg needs nothing more. Elsewhere the
FFmpeg 8 that the pinned PyAV wheel bundles serves, once the dynamic linker can find it under the plain
names torchcodec asks for (it cannot be handed over inside a running process):

    export LD_LIBRARY_PATH=$(python -m mmpipe.audio_io)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
"""

from __future__ import annotations

import glob
import io
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mmpipe.schema import AUDIO_SAMPLE_RATE

AUDIO_EXTENSIONS = ("flac", "wav", "mp3", "ogg", "opus", "m4a")
_FFMPEG_LIBS = ("avutil", "swresample", "swscale", "avcodec", "avformat", "avfilter", "avdevice")


def pyav_ffmpeg_dir(folder: str | os.PathLike | None = None) -> Path:
    """A folder of links, under the names torchcodec loads (libavutil.so.60, ...), to the FFmpeg libraries
    the PyAV wheel bundles (as libavutil-<hash>.so.60); put it on LD_LIBRARY_PATH before Python starts."""
    import importlib.util

    spec = importlib.util.find_spec("av")
    if spec is None or spec.origin is None:
        raise ImportError("PyAV (the `av` package) is not installed: install it, or a system FFmpeg")
    bundled = Path(spec.origin).parent.parent / "av.libs"
    links = Path(folder or Path(tempfile.gettempdir()) / f"mmpipe-ffmpeg-{os.getuid()}")
    links.mkdir(parents=True, exist_ok=True)
    # The bundled libraries find each other through $ORIGIN, which is where the link lies: link them all.
    for lib in sorted(bundled.iterdir()):
        _link(links / lib.name, lib)
    for name in _FFMPEG_LIBS:
        found = sorted(glob.glob(str(bundled / f"lib{name}-*.so.*")))
        if not found:
            raise ImportError(f"PyAV's wheel has no lib{name} under {bundled}: install a system FFmpeg instead")
        major = re.search(r"[.]so[.](\d+)", found[0]).group(1)
        _link(links / f"lib{name}.so.{major}", Path(found[0]))
    return links


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() and link.resolve() == target.resolve():
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.resolve())
    os.replace(tmp, link)  # atomic: two processes may make the same link


def ffmpeg_for_torchcodec() -> bool:
    """Whether torchcodec finds an FFmpeg in this process (so `datasets` can decode audio rows)."""
    try:
        from torchcodec._internally_replaced_utils import load_core_libraries
    except ImportError:
        return False
    try:
        load_core_libraries()
        return True
    except Exception:  # noqa: BLE001 - torchcodec raises a plain RuntimeError listing each version it tried
        return False


def decode_audio_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """(mono float32 samples, sampling rate) of an encoded clip (FLAC, WAV, ...), through PyAV resampled to
    16 kHz as faster-whisper's decode_audio does; shards hold 16 kHz mono, which comes back as it is stored.
    Kept here rather than calling decode_audio: it runs gc.collect() per clip, 0.26 s in a training process."""
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_SAMPLE_RATE)
    chunks = []
    with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
        frames = container.decode(audio=0)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.error.InvalidDataError:  # a damaged frame is skipped, as decode_audio does
                continue
            frame.pts = None  # resample what is there, whatever its timestamps say
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    return audio.astype(np.float32) / 32768.0, AUDIO_SAMPLE_RATE


def wds_audio(key: str, data: bytes) -> Any:
    """A `webdataset` decoder handler: `.flac`/`.wav`/... members become {"array", "sampling_rate"} (the
    layout `datasets` gives); anything else is left to the next handler.

        wds.WebDataset(urls).decode(mmpipe.audio_io.wds_audio)
    """
    ext = key.rsplit(".", 1)[-1].lower()
    if ext not in AUDIO_EXTENSIONS:
        return None
    array, rate = decode_audio_bytes(data)
    return {"array": array, "sampling_rate": rate}


if __name__ == "__main__":
    print(pyav_ffmpeg_dir())
