"""CLIP-family image-text models through Hugging Face `transformers`, behind `ImageTextModel`.

`load_clip` takes a hub id or a local folder in the Hugging Face format; `save_random_clip` writes a
random-weight model in that same format (no CLIP weights can be downloaded on our machines, and speed
does not depend on the weights' values).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zeroshot.errors import UserError

DEFAULT_CLIP = "openai/clip-vit-base-patch32"

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
           "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


@dataclass
class ImageSpec:
    """What a model expects of its input images (read from the folder's preprocessor config)."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class ImageTextModel:
    """A frozen CLIP-style dual encoder: images and texts into one L2-normalised embedding space."""

    def __init__(self, model, tokenizer, image_processor, name: str, device: str, dtype: torch.dtype) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.name = name
        self.device = device
        self.dtype = dtype
        self.max_text_length = int(getattr(model.config.text_config, "max_position_embeddings", 77))
        self.image_spec = ImageSpec(_side(image_processor), tuple(image_processor.image_mean),
                                    tuple(image_processor.image_std))

    @property
    def embedding_dim(self) -> int:
        return int(self.model.config.projection_dim)

    @property
    def logit_scale(self) -> float:
        """The learned temperature (already exponentiated) that turns cosine similarities into logits."""
        return float(self.model.logit_scale.exp().item())

    @property
    def logit_bias(self) -> float:
        """SigLIP's learned bias (0 for CLIP)."""
        bias = getattr(self.model, "logit_bias", None)
        return float(bias.item()) if bias is not None else 0.0

    @property
    def is_siglip(self) -> bool:
        return "siglip" in self.model.config.model_type

    @torch.inference_mode()
    def encode_images(self, pixel_values: torch.Tensor | np.ndarray) -> np.ndarray:
        """L2-normalised image embeddings of a preprocessed batch (N, 3, H, W)."""
        pixels = torch.as_tensor(pixel_values).to(self.device, self.dtype)
        features = _as_tensor(self.model.get_image_features(pixel_values=pixels))
        return _normalise(features)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings, one row per text."""
        padding = "max_length" if self.is_siglip else True  # SigLIP was trained on fixed-length padding
        tokens = self.tokenizer(list(texts), padding=padding, truncation=True,
                                max_length=self.max_text_length, return_tensors="pt").to(self.device)
        features = _as_tensor(self.model.get_text_features(**tokens))
        return _normalise(features)


def _side(image_processor) -> int:
    size = getattr(image_processor, "crop_size", None) or image_processor.size
    if isinstance(size, int):
        return size
    size = dict(size.items()) if hasattr(size, "items") else vars(size)
    return int(size.get("height") or size.get("shortest_edge"))


def _as_tensor(output) -> torch.Tensor:
    # Newer transformers return a model output (pooled projection inside) rather than a bare tensor.
    if isinstance(output, torch.Tensor):
        return output
    return output.pooler_output if getattr(output, "pooler_output", None) is not None else output[0]


def _normalise(features: torch.Tensor) -> np.ndarray:
    features = features.float()
    return torch.nn.functional.normalize(features, dim=-1).cpu().numpy()


def pick_device(device: str | None = None) -> str:
    """`device` if given, else "cuda" when a GPU is visible, else "cpu"."""
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_clip(model: str | os.PathLike = DEFAULT_CLIP, device: str | None = None,
              dtype: str = "fp32") -> ImageTextModel:
    """Load a CLIP or SigLIP checkpoint from a hub id or a local Hugging Face folder.

    Offline and without a cached copy, raises a `UserError` that says how to get the weights.
    """
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    if dtype not in _DTYPES:
        raise UserError(f"unknown dtype {dtype!r}: choose one of fp32, fp16, bf16")
    name = str(model)
    local = Path(name).expanduser()
    if local.exists() and not (local / "config.json").is_file():
        raise UserError(f"{local} is not a Hugging Face model folder (no config.json in it)")
    device = pick_device(device)
    try:
        torch_dtype = _DTYPES[dtype]
        net = AutoModel.from_pretrained(name, dtype=torch_dtype).to(device)
        tokenizer = AutoTokenizer.from_pretrained(name)
        image_processor = AutoImageProcessor.from_pretrained(name)
    except OSError as exc:
        if local.exists():
            raise UserError(f"cannot load the CLIP model in {local}: {exc}") from exc
        raise UserError(
            f"the CLIP model {name!r} is not on this machine and could not be downloaded: on a machine with "
            f"internet run `huggingface-cli download {name} --local-dir DIR`, copy DIR here and pass "
            f"`--clip-model DIR`") from exc
    if not hasattr(net, "get_image_features") or not hasattr(net, "get_text_features"):
        raise UserError(f"{name} is not an image-text (CLIP-family) model")
    return ImageTextModel(net, tokenizer, image_processor, name, device, torch_dtype)


# Sizes of the random models we build for tests ("tiny") and for speed benchmarks ("vit-b-32").
RANDOM_CLIP_SIZES = {
    "tiny": dict(vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                             image_size=224, patch_size=32),
                 text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
                 projection_dim=16),
    "vit-b-32": dict(vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                 num_attention_heads=12, image_size=224, patch_size=32),
                     text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                               num_attention_heads=8),
                     projection_dim=512),
}


def save_random_clip(folder: str | os.PathLike, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random-weight CLIP in the exact Hugging Face folder format; return the folder.

    The tokenizer is a real byte-level BPE trained on a small built-in corpus (the CLIP vocabulary
    cannot be downloaded here), saved as `CLIPTokenizerFast` files, so loading takes the same path as
    a real checkpoint.
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    if size not in RANDOM_CLIP_SIZES:
        raise UserError(f"unknown random CLIP size {size!r}: choose one of {', '.join(RANDOM_CLIP_SIZES)}")
    spec = RANDOM_CLIP_SIZES[size]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_clip_tokenizer()
    config = CLIPConfig(
        text_config=dict(spec["text"], vocab_size=len(tokenizer), max_position_embeddings=77,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id),
        vision_config=spec["vision"], projection_dim=spec["projection_dim"])
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(folder)
    return folder


def _train_clip_tokenizer():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import CLIPTokenizerFast

    special = ["<|startoftext|>", "<|endoftext|>"]
    bpe = Tokenizer(models.BPE(unk_token="<|endoftext|>", end_of_word_suffix="</w>"))
    bpe.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    bpe.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=special, end_of_word_suffix="</w>",
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = [f"a photo of a {w}." for w in _WORDS] + [f"a bad photo of the {w}" for w in _WORDS]
    bpe.train_from_iterator(corpus, trainer)
    bpe.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[(t, bpe.token_to_id(t)) for t in special])
    return CLIPTokenizerFast(tokenizer_object=bpe, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                             unk_token="<|endoftext|>", pad_token="<|endoftext|>", model_max_length=77)


_WORDS = ("cat dog car truck airplane bird ship horse deer frog shirt trouser pullover dress coat sandal "
          "sneaker bag ankle boot red green blue snow street house tree flower person face chair table "
          "dented metallic surface scratch rust defect art painting sculpture rendering sketch origami "
          "tattoo toy plushie cartoon close-up cropped bright dark blurry pixelated jpeg low resolution "
          "good large small nice clean dirty weird black and white").split()
