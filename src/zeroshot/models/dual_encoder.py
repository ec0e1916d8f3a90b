"""A dual encoder whose text tower is a sentence encoder (BERT/MiniLM), in Hugging Face's own format.

`zeroshot train-clip` pairs a small image tower with the bundled all-MiniLM-L6-v2. A `CLIPModel` cannot
hold a BERT text tower, but transformers' `VisionTextDualEncoderModel` can (it is the class Hugging Face
documents for LiT): a saved model is a normal `vision-text-dual-encoder` folder (config.json,
model.safetensors, tokenizer, preprocessor_config.json). One thing differs: that class embeds a text
through BERT's pooler (the [CLS] token through a dense layer and tanh), while a sentence encoder was
trained on the *mean* of its token states. So the config carries one more key, `text_pooling`
("mean", "cls" or "pooler"), and `PooledDualEncoder` honours it. `load_clip` loads every
`vision-text-dual-encoder` folder through this class; a folder without the key pools as transformers
does, so Hugging Face's own dual-encoder checkpoints give their usual embeddings.
"""

from __future__ import annotations

import torch
from transformers import VisionTextDualEncoderModel

TEXT_POOLINGS = ("mean", "cls", "pooler")


def pool_tokens(hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str,
                pooler_output: torch.Tensor | None = None) -> torch.Tensor:
    """One vector per text from the token states (B, T, D): the masked mean, [CLS], or BERT's pooler."""
    if pooling == "mean":
        if attention_mask is None:
            return hidden.mean(dim=1)
        # sentence-transformers' arithmetic: sum of the kept tokens over their count, clamped at 1e-9.
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "pooler":
        if pooler_output is None:
            raise ValueError("this text tower has no pooler: use text_pooling mean or cls")
        return pooler_output
    raise ValueError(f"unknown text pooling {pooling!r}: choose one of {', '.join(TEXT_POOLINGS)}")


class PooledDualEncoder(VisionTextDualEncoderModel):
    """`VisionTextDualEncoderModel` with the text pooling its config names (`text_pooling`, default pooler).

    Image features: the vision tower's pooled output through `visual_projection`; text features: the
    pooled token states through `text_projection`. Both return plain tensors (not model outputs).
    """

    @property
    def text_pooling(self) -> str:
        return getattr(self.config, "text_pooling", None) or "pooler"

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                          token_type_ids: torch.Tensor | None = None, **_unused) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        pooled = pool_tokens(out.last_hidden_state, attention_mask, self.text_pooling,
                             getattr(out, "pooler_output", None))
        return self.text_projection(pooled)

    def get_image_features(self, pixel_values: torch.Tensor, **_unused) -> torch.Tensor:
        out = self.vision_model(pixel_values=pixel_values)
        return self.visual_projection(out.pooler_output)
