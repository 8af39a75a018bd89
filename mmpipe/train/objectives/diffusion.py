"""The diffusion objective: a text-conditioned pixel-space DDPM (diffusers UNet2DConditionModel,
epsilon prediction, MSE), conditioned on the frozen per-token states of an open_clip text tower.

A share of captions (cond_dropout) is replaced by the empty caption during training, so the model
also learns the unconditional score and sampling can use classifier-free guidance (DDIM).
The checkpoint dir holds unet/ (save_pretrained, so UNet2DConditionModel.from_pretrained loads
it), scheduler/, text_encoder/ (an open_clip `local-dir:` model) and diffusion.json.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from mmpipe.train.objectives.base import Objective

META_FILE = "diffusion.json"


@dataclass
class DiffusionConfig:
    """UNet and noise schedule; the defaults train at 32x32 on a CPU, attention at 8x8 only."""

    image_size: int = 32
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    down_block_types: list[str] = field(default_factory=lambda: ["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"])
    up_block_types: list[str] = field(default_factory=lambda: ["CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"])
    layers_per_block: int = 1
    attention_head_dim: int = 32
    norm_num_groups: int = 8
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    cond_dropout: float = 0.1  # share of captions replaced by the empty one (for guidance)


def diffusion_transform(config: DiffusionConfig) -> Callable:
    """Images to config.image_size, scaled to [-1, 1]."""
    from torchvision import transforms as T

    return T.Compose([T.Resize(config.image_size, interpolation=T.InterpolationMode.BICUBIC),
                      T.CenterCrop(config.image_size), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])


def _clip_config(model_name: str) -> dict:
    """open_clip's model config for a registered name or a local-dir: model."""
    import open_clip

    if model_name.startswith("local-dir:"):
        return json.loads((Path(model_name[len("local-dir:"):]) / "open_clip_config.json").read_text())["model_cfg"]
    config = open_clip.get_model_config(model_name)
    if config is None:
        raise ValueError(f"no open_clip config for {model_name!r}: name a registered config or a local-dir: model")
    return config


class TextConditioner(nn.Module):
    """Frozen open_clip text tower: token ids -> final per-token hidden states (B, L, width)."""

    def __init__(self, clip: nn.Module, model_cfg: dict):
        super().__init__()
        self.clip = clip.requires_grad_(False).eval()
        self.model_cfg = dict(model_cfg)  # open_clip's model config, to write the tower back out

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Per-token states after the last block and the final layer norm."""
        out = self.clip.forward_intermediates(text=tokens, text_indices=1, normalize_intermediates=True,
                                              intermediates_only=True)
        return out["text_intermediates"][-1]

    def train(self, mode: bool = True) -> "TextConditioner":
        """Stays in eval mode: the tower is frozen."""
        return super().train(False)

    def save(self, out_dir: Path) -> None:
        """As an open_clip local-dir model: open_clip_config.json + open_clip_model.safetensors."""
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        model_cfg = dict(self.model_cfg)
        if getattr(self.clip, "logit_bias", None) is not None:
            model_cfg.setdefault("init_logit_bias", float(self.clip.logit_bias.detach().reshape(-1)[0]))
        visual = getattr(self.clip, "visual", None)
        cfg = {"model_cfg": model_cfg, "preprocess_cfg": dict(getattr(visual, "preprocess_cfg", {}) or {})}
        (out_dir / "open_clip_config.json").write_text(json.dumps(cfg, indent=1))
        save_file({k: v.detach().cpu().contiguous() for k, v in self.clip.state_dict().items()},
                  str(out_dir / "open_clip_model.safetensors"))


class Diffusion(Objective):
    """task = UNet + frozen text conditioner + DDPM noise schedule; loss = MSE on the noise."""

    checkpoint_name = "unet"

    def __init__(self, unet: nn.Module, conditioner: TextConditioner, tokenizer: Callable,
                 config: DiffusionConfig, clip_model: str, clip_pretrained: str | None = None):
        super().__init__()
        from diffusers import DDPMScheduler

        self.model, self.conditioner, self.tokenizer, self.config = unet, conditioner, tokenizer, config
        self.clip_model, self.clip_pretrained = clip_model, clip_pretrained
        self.noise_scheduler = DDPMScheduler(num_train_timesteps=config.num_train_timesteps,
                                             beta_schedule=config.beta_schedule, prediction_type="epsilon")
        self.register_buffer("null_tokens", tokenizer([""])[0], persistent=False)

    @classmethod
    def create(cls, config: DiffusionConfig, clip_model: str, clip_pretrained: str | None) -> "Diffusion":
        """A fresh UNet sized to the text tower of `clip_model` loaded from `clip_pretrained`."""
        import open_clip
        from diffusers import UNet2DConditionModel

        from mmpipe.models.clip import register_configs

        register_configs()
        model_cfg = _clip_config(clip_model)
        clip = open_clip.create_model(clip_model, pretrained=clip_pretrained, pretrained_text=False)
        conditioner = TextConditioner(clip, model_cfg)
        tokenizer = open_clip.get_tokenizer(clip_model)
        width = conditioner(tokenizer([""])).shape[-1]
        unet = UNet2DConditionModel(
            sample_size=config.image_size, in_channels=3, out_channels=3, layers_per_block=config.layers_per_block,
            block_out_channels=tuple(config.block_out_channels), down_block_types=tuple(config.down_block_types),
            up_block_types=tuple(config.up_block_types), cross_attention_dim=width,
            attention_head_dim=config.attention_head_dim, norm_num_groups=config.norm_num_groups)
        return cls(unet, conditioner, tokenizer, config, clip_model, clip_pretrained)

    def condition(self, tokens: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        """Text states for the UNet; rows where `drop` is set get the empty caption's."""
        if drop is not None:
            tokens = torch.where(drop[:, None], self.null_tokens.to(tokens.device), tokens)
        return self.conditioner(tokens)

    def denoise_error(self, images: torch.Tensor, cond: torch.Tensor, noise: torch.Tensor,
                      timesteps: torch.Tensor) -> torch.Tensor:
        """Per-sample MSE between the true and the predicted noise."""
        noisy = self.noise_scheduler.add_noise(images, noise, timesteps)
        pred = self.model(noisy, timesteps, encoder_hidden_states=cond.to(noisy.dtype)).sample
        return ((pred.float() - noise.float()) ** 2).mean((1, 2, 3))

    def training_forward(self, batch: dict) -> tuple[dict, dict]:
        """Noise a batch at random timesteps, predict the noise; some captions dropped for guidance."""
        images = batch["image"]
        n = len(images)
        drop = torch.rand(n, device=images.device) < self.config.cond_dropout
        noise = torch.randn_like(images)
        timesteps = torch.randint(0, self.config.num_train_timesteps, (n,), device=images.device)
        loss = self.denoise_error(images, self.condition(batch["text"], drop), noise, timesteps).mean()
        return {"diffusion_loss": loss}, {"uncond_share": drop.float().mean().item()}

    def train(self, mode: bool = True) -> "Diffusion":
        """Train or eval mode for the UNet; the text conditioner stays frozen."""
        super().train(mode)
        self.conditioner.eval()
        return self

    def save(self, out_dir: str | Path) -> None:
        """unet/ and scheduler/ (diffusers format), text_encoder/ (open_clip local-dir), diffusion.json."""
        out = Path(out_dir)
        self.model.save_pretrained(out / "unet")
        self.noise_scheduler.save_pretrained(out / "scheduler")
        self.conditioner.save(out / "text_encoder")
        (out / META_FILE).write_text(json.dumps({"config": asdict(self.config), "clip_model": self.clip_model,
                                                 "clip_pretrained": self.clip_pretrained}, indent=1))

    def load(self, out_dir: str | Path) -> None:
        """Load the UNet weights that save() wrote (resume)."""
        from safetensors.torch import load_file

        device = str(next(self.model.parameters()).device)
        self.model.load_state_dict(load_file(str(Path(out_dir) / "unet" / "diffusion_pytorch_model.safetensors"),
                                             device=device))


def load_diffusion(path: str | Path, device: str = "cpu") -> Diffusion:
    """A trained model from its checkpoint dir (or its unet/ dir), rebuilt for sampling, in eval mode."""
    import open_clip
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # its hint to install `accelerate` is noise here
    out = Path(path)
    from mmpipe.train.loop import checkpoint_folder

    out = checkpoint_folder(out.parent if out.name == "unet" else out, META_FILE)
    meta = json.loads((out / META_FILE).read_text())
    text_dir = "local-dir:" + str(out / "text_encoder")
    conditioner = TextConditioner(open_clip.create_model(text_dir), _clip_config(text_dir))
    model = Diffusion(UNet2DConditionModel.from_pretrained(out / "unet"), conditioner, open_clip.get_tokenizer(text_dir),
                      DiffusionConfig(**meta["config"]), meta["clip_model"], meta.get("clip_pretrained"))
    model.noise_scheduler = DDPMScheduler.from_pretrained(out / "scheduler")
    return model.to(device).eval()


@torch.no_grad()
def generate(model: Diffusion, prompts: list[str], steps: int = 25, guidance_scale: float = 3.0,
             seed: int = 0) -> torch.Tensor:
    """Images in [-1, 1] (N, 3, S, S) for the prompts: DDIM with classifier-free guidance."""
    from diffusers import DDIMScheduler

    device = next(model.model.parameters()).device
    sched = DDIMScheduler.from_config(model.noise_scheduler.config)
    sched.set_timesteps(steps)
    size = model.config.image_size
    x = torch.randn((len(prompts), 3, size, size), generator=torch.Generator().manual_seed(seed)).to(device)
    x = x * sched.init_noise_sigma
    cond = model.condition(model.tokenizer(prompts).to(device))
    uncond = model.condition(model.null_tokens[None].expand(len(prompts), -1).to(device))
    states = torch.cat([uncond, cond])
    for t in sched.timesteps:
        eps_uncond, eps_cond = model.model(torch.cat([x, x]), t, encoder_hidden_states=states).sample.chunk(2)
        x = sched.step(eps_uncond + guidance_scale * (eps_cond - eps_uncond), t, x).prev_sample
    return x.clamp(-1, 1)
