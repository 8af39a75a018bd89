"""The contrastive objective: any open_clip model with open_clip's CLIP (InfoNCE) or SigLIP loss."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from mmpipe.train.objectives.base import Objective


class Contrastive(Objective):
    """task = model + loss; training_forward returns ({'contrastive_loss': ...}, logs).

    The checkpoint is the open_clip model's own state dict, so
    `open_clip.create_model_and_transforms(name, pretrained=path)` loads it.
    """

    def __init__(self, model: nn.Module, siglip: bool = False):
        super().__init__()
        from open_clip.loss import ClipLoss, SigLipLoss

        if siglip and getattr(model, "logit_bias", None) is None:
            raise ValueError("SigLIP needs a model with a logit_bias (create it with init_logit_bias)")
        self.model = model
        self.siglip = siglip
        self.loss = SigLipLoss() if siglip else ClipLoss()

    def training_forward(self, batch: dict) -> tuple[dict, dict]:
        """Loss of a batch of (image, text) pairs; logs the temperature and in-batch accuracy."""
        image_features, text_features, logit_scale, *bias = self.model(batch["image"], batch["text"])[:4]
        loss = self.loss(image_features, text_features, logit_scale, *bias)
        with torch.no_grad():
            logits = image_features @ text_features.T
            acc = (logits.argmax(-1) == torch.arange(len(logits), device=logits.device)).float().mean()
        logs = {"logit_scale": logit_scale.item(), "batch_i2t_acc": acc.item()}
        if bias:
            logs["logit_bias"] = bias[0].item()
        return {"contrastive_loss": loss}, logs

    @torch.no_grad()
    def after_step(self) -> None:
        """Clamp the temperature at 100 (open_clip_train does the same after each step)."""
        self.model.logit_scale.clamp_(0, math.log(100))

    def checkpoint_module(self) -> nn.Module:
        """The open_clip model: its state dict is the checkpoint open_clip loads."""
        return self.model


def create_contrastive(model_name: str, pretrained: str | None = None, siglip: bool = False
                       ) -> tuple[Contrastive, Callable, Callable, Callable]:
    """An open_clip model ready to train (random init, or from a tag/checkpoint `pretrained`):
    returns (objective, train transform, eval transform, tokenizer)."""
    import open_clip

    from mmpipe.models.clip import register_configs

    register_configs()
    kwargs: dict = {}
    config = open_clip.get_model_config(model_name) or {}
    if siglip and "init_logit_bias" not in config:
        # open_clip_train's SigLIP init; loading such a checkpoint needs the same init_logit_bias
        kwargs = {"init_logit_scale": math.log(10), "init_logit_bias": -10.0}
    model, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
        model_name, pretrained=pretrained, pretrained_text=False, **kwargs)
    return Contrastive(model, siglip), preprocess_train, preprocess_val, open_clip.get_tokenizer(model_name)
