"""CLIP-style evaluation on held-out pairs: image<->text retrieval recall@k and zero-shot accuracy.

Every metric is a float keyed by name, each with its chance level beside it. A pair's own caption
may also belong to other pairs (the same words): a retrieval counts as correct when it finds the
caption text (image->text) or any image carrying that caption (text->image), and the chance
levels are computed for exactly that rule.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

KS = (1, 5, 10)
TEMPLATES = ("a photo of a {}.",)


def retrieval_metrics(image_emb: torch.Tensor, text_emb: torch.Tensor, captions: Sequence[str] | None = None,
                      ks: Sequence[int] = KS) -> dict[str, float]:
    """Recall@k both ways for aligned pairs (row i of each is pair i), with chance levels."""
    n = len(image_emb)
    image_emb, text_emb = F.normalize(image_emb.float(), dim=-1), F.normalize(text_emb.float(), dim=-1)
    captions = list(captions) if captions is not None else [str(i) for i in range(n)]
    first_of: dict[str, int] = {}
    for i, c in enumerate(captions):
        first_of.setdefault(c, i)
    unique = {c: u for u, c in enumerate(first_of)}
    caption_id = torch.tensor([unique[c] for c in captions])
    first = torch.tensor(list(first_of.values()))
    # image -> text over the distinct captions: rank = captions strictly more similar than its own
    sims = image_emb @ text_emb[first].T
    i2t_rank = (sims > sims.gather(1, caption_id[:, None])).sum(1)
    # text -> image: images that carry the same caption are not competitors
    sims = text_emb @ image_emb.T
    same = caption_id[:, None] == caption_id[None, :]
    t2i_rank = ((sims > sims.diag()[:, None]) & ~same).sum(1)
    competitors = (~same).sum(1).float()
    out: dict[str, float] = {"n_pairs": float(n), "n_captions": float(len(unique))}
    for k in ks:
        out[f"image_to_text_R@{k}"] = (i2t_rank < k).float().mean().item()
        out[f"text_to_image_R@{k}"] = (t2i_rank < k).float().mean().item()
        out[f"chance_image_to_text_R@{k}"] = min(1.0, k / len(unique))
        out[f"chance_text_to_image_R@{k}"] = (k / (competitors + 1)).clamp(max=1).mean().item()
        out[f"mean_R@{k}"] = (out[f"image_to_text_R@{k}"] + out[f"text_to_image_R@{k}"]) / 2
        out[f"chance_R@{k}"] = (out[f"chance_image_to_text_R@{k}"] + out[f"chance_text_to_image_R@{k}"]) / 2
    return out


@torch.no_grad()
def zero_shot_accuracy(model: torch.nn.Module, tokenizer: Callable, image_emb: torch.Tensor, labels: Sequence[str],
                       templates: Sequence[str] = TEMPLATES, device: str = "cpu") -> dict[str, float]:
    """Accuracy of picking each image's label among all labels by prompt similarity (CLIP zero-shot)."""
    classes = sorted(set(labels))
    weights = []
    for name in classes:
        emb = model.encode_text(tokenizer([t.format(name) for t in templates]).to(device)).float()
        weights.append(F.normalize(F.normalize(emb, dim=-1).mean(0), dim=-1))
    logits = F.normalize(image_emb.float(), dim=-1) @ torch.stack(weights).T.cpu()
    truth = torch.tensor([classes.index(label) for label in labels])
    return {"zero_shot_accuracy": (logits.argmax(1) == truth).float().mean().item(),
            "zero_shot_chance": 1.0 / len(classes), "zero_shot_classes": float(len(classes))}


@torch.no_grad()
def embed_pairs(model: torch.nn.Module, batches: Iterable[dict], device: str = "cpu",
                max_samples: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    """Image and text embeddings (normalized, CPU), captions and labels of a stream's batches."""
    images, texts, captions, labels = [], [], [], []
    for batch in batches:
        images.append(model.encode_image(batch["image"].to(device), normalize=True).float().cpu())
        texts.append(model.encode_text(batch["text"].to(device), normalize=True).float().cpu())
        captions += batch["caption"]
        labels += batch["label"]
        if max_samples and len(captions) >= max_samples:
            break
    n = min(len(captions), max_samples or len(captions))
    return torch.cat(images)[:n], torch.cat(texts)[:n], captions[:n], labels[:n]


def evaluate_retrieval(model_name: str, checkpoint: str | None, shards: str | Sequence[str], split: str | None = "val",
                       val_fraction: float = 0.1, batch_size: int = 256, max_samples: int | None = 5000,
                       templates: Sequence[str] = TEMPLATES, device: str | None = None,
                       num_workers: int = 0) -> dict[str, float]:
    """Retrieval R@1/5/10 both ways (+ chance) on a split of WebDataset shards, and zero-shot accuracy
    over the label set when the samples carry a `label` in key.json."""
    import open_clip
    from torch.utils.data import DataLoader

    from mmpipe.models.clip import pick_device, register_configs
    from mmpipe.train.data import ShardStream

    register_configs()
    device = pick_device(device)
    # not the scoring cache of mmpipe.models.clip: a checkpoint path may be rewritten by training
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=checkpoint,
                                                                 pretrained_text=False, device=device)
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    stream = ShardStream(shards, preprocess, tokenizer, split=split, val_fraction=val_fraction, shuffle_buffer=0,
                         repeat=False)
    loader = DataLoader(stream, batch_size=batch_size, num_workers=num_workers)
    image_emb, text_emb, captions, labels = embed_pairs(model, loader, device, max_samples)
    if not captions:
        raise ValueError(f"no {split} samples in the shards to evaluate on")
    out = retrieval_metrics(image_emb, text_emb, captions)
    labelled = [i for i, label in enumerate(labels) if label]
    if labelled:
        out.update(zero_shot_accuracy(model, tokenizer, image_emb[labelled], [labels[i] for i in labelled],
                                      templates, device))
    return out
