"""ASR evaluation: WER and CER with jiwer after Whisper's English text normalizer."""

from __future__ import annotations

from functools import lru_cache


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
