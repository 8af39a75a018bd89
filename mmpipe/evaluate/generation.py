"""Diffusion evaluation: denoising error beside its trivial baseline, the conditioning gap, CLIP score
and Fréchet distance in CLIP embedding space, and a PNG grid of samples to look at."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

MID = (0.3, 0.7)  # "mid" timesteps, as a share of the schedule: the caption decides most there


@torch.no_grad()
def denoising_metrics(model: torch.nn.Module, batches: Iterable[dict], seed: int = 0, mid: tuple = MID,
                      max_samples: int | None = None) -> dict[str, float]:
    """Noise-prediction MSE over all timesteps beside predicting zero noise; and at mid timesteps the
    error with shuffled captions minus the error with the matching ones (the conditioning gap:
    positive when the model uses its caption), plus the unconditional (empty caption) error."""
    gen = torch.Generator().manual_seed(seed)  # the same noise and timesteps for every model
    steps = model.config.num_train_timesteps
    device = next(model.model.parameters()).device
    sums = {"all": 0.0, "zero": 0.0, "matched": 0.0, "shuffled": 0.0, "uncond": 0.0}
    n = 0
    for batch in batches:
        images, tokens = batch["image"].to(device), batch["text"].to(device)
        b = len(images)
        if b < 2:
            continue
        noise = torch.randn(images.shape, generator=gen).to(device)
        t_all = torch.randint(0, steps, (b,), generator=gen).to(device)
        t_mid = torch.randint(int(mid[0] * steps), int(mid[1] * steps), (b,), generator=gen).to(device)
        cond = model.condition(tokens)
        sums["all"] += model.denoise_error(images, cond, noise, t_all).sum().item()
        sums["zero"] += noise.pow(2).mean((1, 2, 3)).sum().item()
        sums["matched"] += model.denoise_error(images, cond, noise, t_mid).sum().item()
        sums["shuffled"] += model.denoise_error(images, cond.roll(1, 0), noise, t_mid).sum().item()
        null = torch.ones(b, dtype=torch.bool, device=device)
        sums["uncond"] += model.denoise_error(images, model.condition(tokens, null), noise, t_mid).sum().item()
        n += b
        if max_samples and n >= max_samples:
            break
    if n == 0:
        raise ValueError("no samples to evaluate the denoiser on")
    m = {k: v / n for k, v in sums.items()}
    return {"denoise_mse": m["all"], "denoise_mse_zero_baseline": m["zero"], "denoise_mse_mid": m["matched"],
            "denoise_mse_mid_shuffled": m["shuffled"], "denoise_mse_mid_uncond": m["uncond"],
            "conditioning_gap": m["shuffled"] - m["matched"],
            "conditioning_gap_relative": (m["shuffled"] - m["matched"]) / max(m["matched"], 1e-12)}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of embeddings (rows)."""
    from scipy import linalg

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    covmean = np.real(covmean)  # sqrtm leaves tiny imaginary parts from round-off
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Tensors in [-1, 1] (N, 3, H, W) as RGB PIL images."""
    arr = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a, "RGB") for a in arr]


@torch.no_grad()
def clip_image_embeddings(clip: torch.nn.Module, preprocess: Callable, images: list[Image.Image],
                          device: str = "cpu") -> torch.Tensor:
    """Normalized CLIP image embeddings (CPU, float32)."""
    x = torch.stack([preprocess(im) for im in images]).to(device)
    return F.normalize(clip.encode_image(x).float(), dim=-1).cpu()


@torch.no_grad()
def clip_metrics(clip: torch.nn.Module, preprocess: Callable, tokenizer: Callable, generated: list[Image.Image],
                 prompts: Sequence[str], real: list[Image.Image], reference: list[Image.Image],
                 device: str = "cpu") -> dict[str, float]:
    """CLIP score (100 x cosine, floored at 0) of generated images with their prompts and of the real
    images with the same captions; Fréchet distance in CLIP space from generated to `reference`
    real images, beside real-to-reference (the floor for sets of this size)."""
    text = F.normalize(clip.encode_text(tokenizer(list(prompts)).to(device)).float(), dim=-1).cpu()
    gen_emb = clip_image_embeddings(clip, preprocess, generated, device)
    real_emb = clip_image_embeddings(clip, preprocess, real, device)
    ref_emb = clip_image_embeddings(clip, preprocess, reference, device)
    return {"clip_score": (100 * (gen_emb * text).sum(-1).clamp(min=0)).mean().item(),
            "clip_score_real": (100 * (real_emb * text).sum(-1).clamp(min=0)).mean().item(),
            "fd_clip": frechet_distance(gen_emb.numpy(), ref_emb.numpy()),
            "fd_clip_real": frechet_distance(real_emb.numpy(), ref_emb.numpy())}


def save_grid(images: list[Image.Image], captions: Sequence[str], path: str | Path, cols: int = 4) -> Path:
    """A PNG grid of images titled with their captions."""
    from matplotlib.figure import Figure

    rows = max(1, -(-len(images) // cols))
    fig = Figure(figsize=(cols * 2.2, rows * 2.4))
    for i, (im, cap) in enumerate(zip(images, captions)):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(im, interpolation="nearest")
        ax.set_title(cap if len(cap) <= 28 else cap[:27] + "…", fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def evaluate_generation(checkpoint: str, shards: str | Sequence[str], clip_model: str, clip_pretrained: str | None,
                        split: str = "val", val_fraction: float = 0.1, n_generate: int = 32, steps: int = 25,
                        guidance_scale: float = 3.0, grid_path: str | Path | None = None, batch_size: int = 64,
                        max_samples: int | None = 2000, seed: int = 0, device: str | None = None) -> dict[str, float]:
    """All generation metrics of a diffusion checkpoint on `split`; CLIP metrics use the given
    open_clip model. Samples are generated for the captions of the first n_generate pairs and
    compared with the next n_generate real images (both at the model's resolution)."""
    import open_clip
    from torch.utils.data import DataLoader

    from mmpipe.models.clip import pick_device, register_configs
    from mmpipe.train.data import ShardStream
    from mmpipe.train.objectives.diffusion import diffusion_transform, generate, load_diffusion

    device = pick_device(device)
    model = load_diffusion(checkpoint, device)
    stream = ShardStream(shards, diffusion_transform(model.config), model.tokenizer, split=split,
                         val_fraction=val_fraction, shuffle_buffer=0, repeat=False)
    out = denoising_metrics(model, DataLoader(stream, batch_size=batch_size), seed, max_samples=max_samples)

    real, captions = [], []
    for sample in stream:
        real.append(sample["image"])
        captions.append(sample["caption"])
        if len(real) == 2 * n_generate:
            break
    m = len(real) // 2
    if m < 2:
        return out
    generated = to_pil(generate(model, captions[:m], steps, guidance_scale, seed))
    register_configs()
    clip, _, preprocess = open_clip.create_model_and_transforms(clip_model, pretrained=clip_pretrained,
                                                                pretrained_text=False, device=device)
    clip.eval()
    real_pil = to_pil(torch.stack(real))
    out.update(clip_metrics(clip, preprocess, open_clip.get_tokenizer(clip_model), generated, captions[:m],
                            real_pil[:m], real_pil[m:2 * m], device))
    out["generated"] = float(m)
    if grid_path:
        save_grid(generated[:16], captions[:16], grid_path)
    return out
