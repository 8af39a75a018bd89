"""The asr objective: a Whisper-architecture sequence-to-sequence recognizer (transformers'
WhisperForConditionalGeneration) trained on a curated audio version's transcripts as targets: the
pseudo-labels of the transcribe flow, as Whisper's weak supervision and Distil-Whisper's students use
them, or each sample's reference text where it has one and `targets="reference"` asks for it.

The shipped tiny config (AsrConfig's defaults) trains on a CPU in minutes: a few hundred thousand
weights, 40 log-mel bins over a window of `max_seconds`, and characters as tokens (a `tokenizers`
WordLevel model over single characters, after Whisper's English text normalizer), so the vocabulary is
the few dozen symbols normalized English uses. On a GPU, a Whisper config (`openai/whisper-tiny` ... up
to `large-v3` sizes: d_model, layers, heads, 80 or 128 mel bins, a 30 s window) trains the same way.

A checkpoint folder is what `from_pretrained` reads: config.json + model.safetensors
(WhisperForConditionalGeneration), preprocessor_config.json (WhisperFeatureExtractor), tokenizer.json
(PreTrainedTokenizerFast) and asr_config.json.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
import numpy as np
import torch
from torch import nn

from mmpipe.train.objectives.base import Objective

CONFIG_FILE = "asr_config.json"
TOKENIZER_FILE = "tokenizer.json"
PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
# What Whisper's English normalizer leaves: lower-case letters, digits, the apostrophe and the space.
CHARACTERS = " 'abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass
class AsrConfig:
    """The model and its inputs; the defaults are the tiny CPU config."""

    d_model: int = 96
    encoder_layers: int = 2
    decoder_layers: int = 2
    heads: int = 4
    ffn_dim: int = 256
    n_mels: int = 40
    max_seconds: int = 4  # the encoder's window: longer clips are skipped in training, cut in evaluation
    max_label_length: int = 96  # characters per target, the end token included; longer targets are cut
    targets: str = "transcript"  # transcript (the pseudo-label) or reference (where a sample has one)
    dropout: float = 0.0

    def __post_init__(self):
        if self.targets not in ("transcript", "reference"):
            raise ValueError(f"targets must be 'transcript' or 'reference', not {self.targets!r}")


def quiet_transformers() -> None:
    """transformers' own progress bars and notices off (saving a checkpoint drew a bar per save; greedy
    decoding warned about its generation settings): our commands show their own progress."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def char_tokenizer():
    """A character-level tokenizer as a `transformers` fast tokenizer (pad 0, start 1, end 2, unknown 3)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate([PAD, BOS, EOS, UNK, *CHARACTERS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK)


def feature_extractor(config: AsrConfig):
    """Whisper's log-mel front end at the config's mel bins and window."""
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=config.n_mels, chunk_length=config.max_seconds)


def normalized_target(text: str) -> str:
    """A target as the model learns it: Whisper's English normalizer, then only the vocabulary's characters."""
    from mmpipe.evaluate.asr import normalize

    return "".join(c for c in normalize(text) if c in CHARACTERS)


class AsrFeatures:
    """Audio -> log-mel input features, text -> label ids (-100 past the end): what AudioStream calls."""

    def __init__(self, config: AsrConfig):
        self.config = config
        self.extractor = feature_extractor(config)
        self.tokenizer = char_tokenizer()

    def audio(self, samples: np.ndarray) -> torch.Tensor:
        """(n_mels, frames) of one 16 kHz clip, padded or cut to the window."""
        out = self.extractor(samples, sampling_rate=16000, return_tensors="np").input_features[0]
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))

    def labels(self, text: str) -> torch.Tensor:
        """Character ids of the normalized text plus the end token, padded with -100 to max_label_length."""
        ids = self.tokenizer(normalized_target(text), add_special_tokens=False)["input_ids"]
        ids = ids[: self.config.max_label_length - 1] + [self.tokenizer.eos_token_id]
        out = torch.full((self.config.max_label_length,), -100, dtype=torch.long)
        out[: len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def sample(self, audio: np.ndarray, transcript: str, reference: str) -> dict:
        """A training sample: input features and the labels of the target the config asks for."""
        target = reference if self.config.targets == "reference" and reference else transcript
        return {"input_features": self.audio(audio), "labels": self.labels(target), "text": target}

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Generated ids -> texts (special tokens dropped)."""
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)


def whisper_config(config: AsrConfig, vocab_size: int):
    """The transformers WhisperConfig of an AsrConfig."""
    from transformers import WhisperConfig

    frames = config.max_seconds * 100  # WhisperFeatureExtractor's 10 ms hop
    return WhisperConfig(vocab_size=vocab_size, num_mel_bins=config.n_mels, d_model=config.d_model,
                         encoder_layers=config.encoder_layers, decoder_layers=config.decoder_layers,
                         encoder_attention_heads=config.heads, decoder_attention_heads=config.heads,
                         encoder_ffn_dim=config.ffn_dim, decoder_ffn_dim=config.ffn_dim,
                         max_source_positions=frames // 2, max_target_positions=config.max_label_length + 1,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                         suppress_tokens=None, begin_suppress_tokens=None, dropout=config.dropout)


class SpeechRecognizer(Objective):
    """WhisperForConditionalGeneration and its cross-entropy on the targets: `asr_loss`."""

    def __init__(self, config: AsrConfig | None = None):
        super().__init__()
        from transformers import WhisperForConditionalGeneration

        quiet_transformers()
        self.config = config or AsrConfig()
        self.features = AsrFeatures(self.config)
        self.model = WhisperForConditionalGeneration(whisper_config(self.config, len(self.features.tokenizer)))
        self.model.generation_config.max_length = self.config.max_label_length + 1

    def training_forward(self, batch: dict) -> tuple[dict, dict]:
        labels = batch["labels"]
        used = int((labels != -100).sum(1).max())  # the batch's longest target: no compute on padding
        out = self.model(input_features=batch["input_features"], labels=labels[:, :used])
        return {"asr_loss": out.loss}, {}

    @torch.no_grad()
    def transcribe(self, features: torch.Tensor) -> list[str]:
        """Greedy decoding of a batch of input features."""
        ids = self.model.generate(features, max_new_tokens=self.config.max_label_length)
        return self.features.decode(ids)

    def save(self, out_dir: str | Path) -> None:
        """The transformers folder (config.json, model.safetensors), the feature extractor, the tokenizer
        and asr_config.json."""
        out = Path(out_dir)
        self.model.save_pretrained(out, safe_serialization=True)
        self.features.extractor.save_pretrained(out)
        self.features.tokenizer.backend_tokenizer.save(str(out / TOKENIZER_FILE))
        (out / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=1))

    def load(self, out_dir: str | Path) -> None:
        """The weights save() wrote (a resumed run)."""
        from safetensors.torch import load_file

        device = next(self.model.parameters()).device
        state = load_file(str(Path(out_dir) / "model.safetensors"), device=str(device))
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        # save_pretrained leaves out tied weights (the output projection is the token embedding)
        if unexpected or set(missing) - {"proj_out.weight"}:
            raise ValueError(f"checkpoint {out_dir} does not match the model: missing {missing}, extra {unexpected}")
        self.model.tie_weights()


def load_asr(path: str | Path, device: str | None = None) -> SpeechRecognizer:
    """A trained recognizer from a checkpoint folder, or from a run folder (its newest whole checkpoint);
    the weights are read with WhisperForConditionalGeneration.from_pretrained."""
    from transformers import WhisperForConditionalGeneration

    from mmpipe.train.loop import checkpoint_folder

    folder = checkpoint_folder(path, CONFIG_FILE)
    recognizer = SpeechRecognizer(AsrConfig(**json.loads((folder / CONFIG_FILE).read_text())))
    recognizer.model = WhisperForConditionalGeneration.from_pretrained(folder)
    recognizer.model.generation_config.max_length = recognizer.config.max_label_length + 1
    return recognizer.to(device or "cpu").eval()

