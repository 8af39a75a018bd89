"""ASR evaluation: WER and CER with jiwer after Whisper's English text normalizer."""

from __future__ import annotations

from functools import lru_cache

WORST_TRANSCRIPTS = "worst_transcripts.json"  # an asr model's worst clips, written beside its checkpoint at evaluation


@lru_cache(maxsize=1)
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    """Whisper's English normalizer: case, punctuation, numbers, British -> American spelling."""
    return _normalizer()(text or "").strip()


def wer_cer(reference: str | None, hypothesis: str | None) -> tuple[float | None, float | None]:
    """(WER, CER) of a hypothesis against a reference, both normalized; None without a reference."""
    import jiwer

    ref = normalize(reference or "")
    if not ref:
        return None, None
    hyp = normalize(hypothesis or "")
    return float(jiwer.wer(ref, hyp)), float(jiwer.cer(ref, hyp))


def corpus_wer(references: list[str], hypotheses: list[str]) -> float | None:
    """Corpus-level WER (errors over all reference words) of normalized pairs."""
    import jiwer

    pairs = [(normalize(r), normalize(h)) for r, h in zip(references, hypotheses) if normalize(r)]
    if not pairs:
        return None
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


def corpus_cer(references: list[str], hypotheses: list[str]) -> float | None:
    """Corpus-level CER of normalized pairs."""
    import jiwer

    pairs = [(normalize(r), normalize(h)) for r, h in zip(references, hypotheses) if normalize(r)]
    if not pairs:
        return None
    return float(jiwer.cer([r for r, _ in pairs], [h for _, h in pairs]))


def evaluate_recognizer(checkpoint: str, shards: str, split: str | None = "val", device: str | None = None,
                        batch_size: int = 16, worst: int = 0) -> dict:
    """WER and CER of a trained asr model (greedy decoding) against the reference texts of a split's clips,
    and its agreement with their transcripts (the pseudo-labels it learned from): `wer`, `cer`,
    `transcript_wer`, `n_references`, `n_clips`. worst > 0 adds the `worst` clips by WER under "worst"."""
    import itertools

    import torch

    from mmpipe.train.audio_data import iter_clips
    from mmpipe.train.objectives.asr import load_asr

    model = load_asr(checkpoint, device)
    dev = next(model.parameters()).device
    clips, hypotheses = [], []
    batch: list[dict] = []
    for clip in itertools.chain(iter_clips(shards, split=split), [None]):  # streamed: a batch of audio at a time
        if clip is not None:
            batch.append(clip)
        if batch and (clip is None or len(batch) == batch_size):
            features = torch.stack([model.features.audio(c["audio"]) for c in batch]).to(dev)
            hypotheses += model.transcribe(features)
            clips += [{k: c[k] for k in ("sample_id", "transcript", "reference")} for c in batch]
            batch = []
    if not clips:  # a small version's validation split can be empty: nothing to measure
        return {"n_clips": 0.0, "n_references": 0.0}
    refs = [c["reference"] for c in clips]
    metrics = {"wer": corpus_wer(refs, hypotheses), "cer": corpus_cer(refs, hypotheses),
               "transcript_wer": corpus_wer([c["transcript"] for c in clips], hypotheses),
               "n_references": float(sum(bool(normalize(r)) for r in refs)), "n_clips": float(len(clips))}
    out = {k: v for k, v in metrics.items() if v is not None}
    if worst:
        scored = [{**c, "hypothesis": h, "wer": wer_cer(c["reference"], h)[0]} for c, h in zip(clips, hypotheses)]
        out["worst"] = sorted((s for s in scored if s["wer"] is not None), key=lambda s: -s["wer"])[:worst]
    return out
