"""Fixtures of the library tests: speech shards laid out as the transcribe flow exports them."""

from __future__ import annotations

import json

import pytest

from mmpipe.demo.speech import EXPECTED, SPEECH_DIR
from mmpipe.sources.tars import write_tar_atomic


def pseudo_label(reference: str) -> str:
    """The transcript the speech shards hold: the reference with its last word dropped (a pseudo-label that
    differs from the reference)."""
    return reference.rsplit(" ", 1)[0]


@pytest.fixture(scope="session")
def speech_shard(tmp_path_factory) -> str:
    """The ten shipped clips that decode (audio member, transcript .txt, json with the reference) as one shard."""
    samples = []
    for name, outcome in sorted(EXPECTED.items()):
        if outcome != "kept":
            continue
        path = SPEECH_DIR / name
        reference = path.with_suffix(".txt").read_text().strip()
        samples.append({"__key__": path.stem, path.suffix[1:]: path.read_bytes(),
                        "txt": pseudo_label(reference).encode(),
                        "json": json.dumps({"sample_id": path.stem, "reference": reference}).encode()})
    path = tmp_path_factory.mktemp("speech-shards") / "shard-000000.tar"
    write_tar_atomic(path, samples)
    return str(path)
