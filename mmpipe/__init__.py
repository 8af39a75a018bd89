"""mmpipe: multimodal dataset curation and training. The library: pure Python + torch."""

__version__ = "0.1.0"
