"""The contrastive objective: an open_clip model trained with the CLIP InfoNCE loss."""

from __future__ import annotations

import torch
from torch import nn


class Contrastive(nn.Module):
    """task = model + loss; training_forward returns ({'contrastive_loss': ...}, logs)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        import open_clip

        self.model = model
        self.loss = open_clip.ClipLoss()

    def training_forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[dict, dict]:
        images, tokens = batch
        image_features, text_features, logit_scale = self.model(images, tokens)[:3]
        loss = self.loss(image_features, text_features, logit_scale)
        with torch.no_grad():
            logits = image_features @ text_features.T
            acc = (logits.argmax(-1) == torch.arange(len(logits), device=logits.device)).float().mean()
        return {"contrastive_loss": loss}, {"logit_scale": logit_scale.item(), "batch_i2t_acc": acc.item()}
