"""Model names the command line and flows default to (no heavy imports here, so the CLI stays fast).

Production defaults download their weights on first use; offline, pass a local checkpoint or the
tiny models the project ships (see README, "Models offline").
"""

CLIP_MODEL = "ViT-B-32"
CLIP_PRETRAINED = "laion2b_s34b_b79k"
TINY_CLIP = "mmpipe-tiny-clip"
WHISPER_MODEL = "large-v3"
