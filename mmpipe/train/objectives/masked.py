"""The masked objective: an M3AE-style multimodal masked autoencoder (Geng et al., 2022).

One transformer encodes the visible image patches together with the visible caption tokens; a
light decoder fills in the rest. Image patches are masked MAE-style (dropped, 75%) and scored by
MSE against per-patch normalized pixels; caption tokens are masked (hidden from attention and
replaced by a mask token in the decoder) and scored by cross-entropy. Blocks and patch embedding
are timm's. The checkpoint is model.safetensors plus masked_config.json (`load_masked`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from mmpipe.train.objectives.base import Objective

CONFIG_FILE = "masked_config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class MaskedConfig:
    """Architecture and masking; the defaults train on a CPU in minutes (32 px, 4 px patches)."""

    image_size: int = 32
    patch_size: int = 4
    width: int = 96
    depth: int = 3
    heads: int = 4
    decoder_width: int = 64
    decoder_depth: int = 1
    decoder_heads: int = 4
    mlp_ratio: float = 2.0
    context_length: int = 16
    vocab_size: int = 49408  # open_clip's BPE vocabulary
    image_mask_ratio: float = 0.75
    text_mask_ratio: float = 0.3
    text_loss_weight: float = 0.5


def masked_transform(config: MaskedConfig) -> Callable:
    """Eval-style image transform to config.image_size (the loss normalizes each patch itself)."""
    from torchvision import transforms as T

    return T.Compose([T.Resize(config.image_size, interpolation=T.InterpolationMode.BICUBIC),
                      T.CenterCrop(config.image_size), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])


def masked_tokenizer(config: MaskedConfig) -> Callable:
    """open_clip's BPE tokenizer at the model's context length."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=config.context_length)


def patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, patches, p*p*3), patches in PatchEmbed's row-major order."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def _blocks(width: int, heads: int, depth: int, mlp_ratio: float) -> nn.ModuleList:
    from timm.models.vision_transformer import Block

    return nn.ModuleList(Block(width, heads, mlp_ratio, qkv_bias=True) for _ in range(depth))


class MaskedAutoencoder(Objective):
    """The model and its objective: training_forward returns image_loss and text_loss."""

    checkpoint_name = WEIGHTS_FILE

    def __init__(self, config: MaskedConfig | None = None):
        super().__init__()
        from open_clip.tokenizer import SimpleTokenizer
        from timm.layers import PatchEmbed

        c = self.config = config or MaskedConfig()
        tok = SimpleTokenizer(context_length=c.context_length)
        self.special = (0, tok.sot_token_id, tok.eot_token_id)  # pad, start, end: never masked
        self.patch_embed = PatchEmbed(c.image_size, c.patch_size, 3, c.width)
        n = self.patch_embed.num_patches
        self.image_pos = nn.Parameter(torch.randn(1, n, c.width) * 0.02)
        self.text_pos = nn.Parameter(torch.randn(1, c.context_length, c.width) * 0.02)
        self.modality = nn.Parameter(torch.randn(2, c.width) * 0.02)  # image, text
        self.token_embedding = nn.Embedding(c.vocab_size, c.width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.blocks = _blocks(c.width, c.heads, c.depth, c.mlp_ratio)
        self.norm = nn.LayerNorm(c.width)
        self.decoder_embed = nn.Linear(c.width, c.decoder_width)
        self.mask_token = nn.Parameter(torch.randn(1, 1, c.decoder_width) * 0.02)
        self.decoder_pos = nn.Parameter(torch.randn(1, n + c.context_length, c.decoder_width) * 0.02)
        self.decoder_blocks = _blocks(c.decoder_width, c.decoder_heads, c.decoder_depth, c.mlp_ratio)
        self.decoder_norm = nn.LayerNorm(c.decoder_width)
        self.pixel_head = nn.Linear(c.decoder_width, c.patch_size**2 * 3)
        # predicted tokens are scored against the input embedding table (weight tying)
        self.text_head = nn.Linear(c.decoder_width, c.width)

    def _text_masks(self, tokens: torch.Tensor, ratio: float, generator: torch.Generator | None):
        real = tokens != 0
        maskable = real & (tokens != self.special[1]) & (tokens != self.special[2])
        rand = torch.rand(tokens.shape, generator=generator, device="cpu").to(tokens.device)
        return real, maskable & (rand < ratio)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Mean-pooled encoder features of whole images (no masking, no text): probe features."""
        x = self.patch_embed(images) + self.image_pos + self.modality[0]
        for block in self.blocks:
            x = block(x)
        return self.norm(x).mean(1)

    def forward_masked(self, images: torch.Tensor, tokens: torch.Tensor, image_ratio: float | None = None,
                       text_ratio: float | None = None, generator: torch.Generator | None = None) -> dict:
        """Mask, encode, decode. Returns losses, predictions and masks (for evaluation)."""
        c = self.config
        image_ratio = c.image_mask_ratio if image_ratio is None else image_ratio
        text_ratio = c.text_mask_ratio if text_ratio is None else text_ratio
        b, n, d = images.shape[0], self.patch_embed.num_patches, c.width
        patches = self.patch_embed(images) + self.image_pos + self.modality[0]
        keep = max(1, int(round(n * (1 - image_ratio))))
        order = torch.rand(b, n, generator=generator, device="cpu").to(images.device).argsort(1)
        visible = order[:, :keep]
        image_masked = torch.ones(b, n, dtype=torch.bool, device=images.device).scatter_(1, visible, False)
        real, text_masked = self._text_masks(tokens, text_ratio, generator)
        text = self.token_embedding(tokens) + self.text_pos + self.modality[1]

        x = torch.cat([patches.gather(1, visible[..., None].expand(-1, -1, d)), text], 1)
        # masked and padding tokens take no part: nothing attends to them
        attend = torch.cat([torch.ones(b, keep, dtype=torch.bool, device=x.device), real & ~text_masked], 1)
        for block in self.blocks:
            x = block(x, attn_mask=attend[:, None, None, :])
        x = self.decoder_embed(self.norm(x))

        mask_token = self.mask_token.to(x.dtype).expand(b, n + c.context_length, -1)
        y = mask_token.clone()
        y[:, :n] = y[:, :n].scatter(1, visible[..., None].expand(-1, -1, y.shape[-1]), x[:, :keep])
        y[:, n:] = torch.where(text_masked[..., None], mask_token[:, n:], x[:, keep:])
        y = y + self.decoder_pos
        attend = torch.cat([torch.ones(b, n, dtype=torch.bool, device=y.device), real], 1)
        for block in self.decoder_blocks:
            y = block(y, attn_mask=attend[:, None, None, :])
        y = self.decoder_norm(y)

        target = patchify(images, c.patch_size)
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        pixels = self.pixel_head(y[:, :n])
        image_loss = ((pixels - target) ** 2).mean(-1)[image_masked].mean()
        logits = self.text_head(y[:, n:][text_masked]) @ self.token_embedding.weight.T
        targets = tokens[text_masked]
        text_loss = F.cross_entropy(logits.float(), targets) if len(targets) else logits.sum() * 0.0
        return {"image_loss": image_loss, "text_loss": text_loss, "pixels": pixels, "target": target,
                "image_masked": image_masked, "logits": logits, "targets": targets}

    def training_forward(self, batch: dict) -> tuple[dict, dict]:
        """Image and (weighted) text reconstruction losses of a batch; logs masked-token accuracy."""
        out = self.forward_masked(batch["image"], batch["text"])
        with torch.no_grad():
            acc = (out["logits"].argmax(-1) == out["targets"]).float().mean() if len(out["targets"]) else 0.0
        return ({"image_loss": out["image_loss"], "text_loss": self.config.text_loss_weight * out["text_loss"]},
                {"text_ce": out["text_loss"].item(), "masked_token_acc": float(acc)})

    def save(self, out_dir: str | Path) -> None:
        """model.safetensors + masked_config.json."""
        out = Path(out_dir)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(out / WEIGHTS_FILE))
        (out / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=1))

    def load(self, out_dir: str | Path) -> None:
        """Load the weights that save() wrote."""
        device = next(self.parameters()).device
        self.load_state_dict(load_file(str(Path(out_dir) / WEIGHTS_FILE), device=str(device)))


def load_masked(path: str | Path, device: str = "cpu") -> MaskedAutoencoder:
    """A trained masked autoencoder from its checkpoint dir (or its model.safetensors), in eval mode."""
    path = Path(path)
    from mmpipe.train.loop import checkpoint_folder

    out_dir = checkpoint_folder(path.parent if path.is_file() else path, CONFIG_FILE)
    model = MaskedAutoencoder(MaskedConfig(**json.loads((out_dir / CONFIG_FILE).read_text())))
    model.load(out_dir)
    return model.to(device).eval()
