"""CLIP-family image-text models through Hugging Face `transformers`, behind `ImageTextModel`.

`load_clip` takes a hub id or a local folder in the Hugging Face format: CLIP, SigLIP, or a
`vision-text-dual-encoder` (what `zeroshot train-clip` writes, see `zeroshot.models.dual_encoder`).
`zeroshot.testing.save_random_clip` writes a random-weight model in that same format (no CLIP weights
can be downloaded on our machines, and speed does not depend on the weights' values).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from zeroshot import _deprecated
from zeroshot.errors import UserError, first_line
from zeroshot.models.dtype import (
    DtypeChoice,
    ProbeRun,
    convert,
    dtype_fingerprint,
    dtype_name,
    load_in_dtype,
    recorded_dtype,
    torch_dtype,
)
from zeroshot.models.hub import hub_reachable

DEFAULT_CLIP = "openai/clip-vit-base-patch32"

# Moved to zeroshot.testing (the library never imports it); the old names work until 0.3, with a warning.
__getattr__ = _deprecated.forward_names(__name__, {"save_random_clip": "zeroshot.testing",
                                                   "RANDOM_CLIP_SIZES": "zeroshot.testing"})


@dataclass
class ImageSpec:
    """What a model expects of its input images (read from the folder's preprocessor config).

    The defaults describe CLIP: resize the shortest side to `size` (bicubic), centre-crop `size` x `size`,
    rescale to [0, 1], normalise. SigLIP-style processors resize straight to `resize_to` and skip the crop.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_shortest_edge: int | None = None
    resize_to: tuple[int, int] | None = None  # (height, width)
    crop_size: tuple[int, int] | None = None  # (height, width)
    resample: int = 3  # PIL.Image.Resampling.BICUBIC
    rescale_factor: float = 1 / 255
    do_normalize: bool = True

    def __post_init__(self) -> None:
        if self.resize_to is None and self.resize_shortest_edge is None:
            self.resize_shortest_edge = self.size
        if self.resize_to is None and self.crop_size is None:
            self.crop_size = (self.size, self.size)

    @property
    def output_size(self) -> tuple[int, int]:
        """(height, width) of the tensors `preprocess` makes."""
        if self.crop_size is not None:
            return self.crop_size
        if self.resize_to is not None:
            return self.resize_to
        return (self.size, self.size)

    @classmethod
    def from_processor(cls, processor) -> ImageSpec:
        """Read the resize/crop/normalise settings of a Hugging Face image processor."""
        do_resize = getattr(processor, "do_resize", True)
        size = _size_dict(getattr(processor, "size", None)) if do_resize else {}
        do_crop = getattr(processor, "do_center_crop", True)
        crop = _size_dict(getattr(processor, "crop_size", None)) if do_crop else {}
        shortest = size.get("shortest_edge")
        resize_to = (size["height"], size["width"]) if "height" in size and "width" in size else None
        crop_size = (crop["height"], crop["width"]) if "height" in crop and "width" in crop else None
        if shortest is None and resize_to is None:
            raise UserError(f"unsupported image processor: no resize to a side or to a size ({size})")
        final = crop_size or resize_to or (shortest, shortest)
        if resize_to is None and crop_size is None:
            raise UserError("unsupported image processor: a shortest-side resize without a centre crop")
        return cls(int(final[0]), tuple(float(m) for m in processor.image_mean),
                   tuple(float(s) for s in processor.image_std),
                   resize_shortest_edge=shortest, resize_to=resize_to, crop_size=crop_size,
                   resample=int(getattr(processor, "resample", 3)),
                   rescale_factor=float(processor.rescale_factor) if getattr(processor, "do_rescale", True)
                   else 1.0,
                   do_normalize=bool(getattr(processor, "do_normalize", True)))


def _size_dict(size) -> dict[str, int]:
    if size is None:
        return {}
    if isinstance(size, int):
        return {"shortest_edge": size}
    items = size.items() if hasattr(size, "items") else vars(size).items()
    return {key: int(value) for key, value in items if value is not None}


class ImageTextModel:
    """A frozen CLIP-style dual encoder: images and texts into one L2-normalised embedding space."""

    def __init__(self, model, tokenizer, image_processor, name: str, device: str, dtype: torch.dtype,
                 dtype_name: str | None = None, fp32_fingerprint: str | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.name = name
        self.device = device
        self.dtype = dtype  # of the floating-point inputs (an int8 model takes fp32 pixels)
        self.dtype_name = dtype_name or _name_of(dtype)  # fp32, bf16, fp16 or int8
        self.dtype_choice: DtypeChoice | None = None  # what `--dtype auto` measured, when it chose
        self.max_text_length = int(getattr(model.config.text_config, "max_position_embeddings", 77))
        self.image_spec = ImageSpec.from_processor(image_processor)
        self._fingerprint = fp32_fingerprint  # a converted model keeps the one of its fp32 source

    @property
    def embedding_dim(self) -> int:
        """Length of the embeddings (CLIP's projection_dim; SigLIP has no projection, so its hidden size)."""
        config = self.model.config
        if getattr(config, "projection_dim", None):
            return int(config.projection_dim)
        text = config.text_config
        return int(getattr(text, "projection_size", None) or text.hidden_size)

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
        """SigLIP scores each (image, text) pair with a sigmoid instead of a softmax over texts."""
        return "siglip" in self.model.config.model_type

    @property
    def fingerprint(self) -> str:
        """A short hash of what determines this model's embeddings: weights, config, tokenizer, dtype.

        Keys on-disk caches (class-weight matrices) and what an image index accepts, so embeddings of two
        dtypes never mix. Hashes a strided sample of every fp32 parameter rather than all bytes, so it
        costs milliseconds even for large models yet changes with any retraining; another dtype is the
        fp32 fingerprint tagged with the dtype (`zeroshot.models.dtype.dtype_fingerprint`, the rule of
        every encoder), so fp32 fingerprints are the same as before dtypes were chosen.
        """
        return dtype_fingerprint(self.fp32_fingerprint, self.dtype_name)

    @property
    def fp32_fingerprint(self) -> str:
        """The fingerprint of the fp32 weights this model is (or was converted from)."""
        if self._fingerprint is None:
            self._fingerprint = _fingerprint(self)
        return self._fingerprint

    def fp32_fingerprints(self) -> Iterator[str]:
        """Today's fp32 fingerprint, then (an fp32 model only) the earlier rule's, which also hashed
        where the model was loaded from (so that an index built with `--clip-model clip` was refused
        when reopened as /abs/path/clip)."""
        yield self.fp32_fingerprint
        if self.dtype_name == "fp32":
            yield _fingerprint(self, legacy=True)

    def matches(self, recorded: str) -> bool:
        """Whether `recorded` (an index's, a saved captioner's) is this model in its dtype, by today's
        fingerprint rule or an earlier one."""
        return recorded_dtype(recorded, self.fp32_fingerprints()) == self.dtype_name

    def converted(self, dtype: str, inplace: bool = False) -> ImageTextModel:
        """This model in another number format (see `zeroshot.models.dtype.convert`); a copy unless
        `inplace`."""
        if self.dtype_name != "fp32":
            raise UserError(f"convert to {dtype} from the fp32 model, not from {self.dtype_name}")
        fp32_fingerprint = self.fp32_fingerprint  # before an in-place conversion changes the weights
        net = convert(self.model, dtype, inplace=inplace)
        return ImageTextModel(net, self.tokenizer, self.image_processor, self.name, self.device,
                              torch_dtype(dtype), dtype_name=dtype, fp32_fingerprint=fp32_fingerprint)

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


_name_of = dtype_name  # the parameter of ImageTextModel.__init__ shadows the function


def _as_tensor(output) -> torch.Tensor:
    # Newer transformers return a model output (pooled projection inside) rather than a bare tensor.
    if isinstance(output, torch.Tensor):
        return output
    return output.pooler_output if getattr(output, "pooler_output", None) is not None else output[0]


def _fingerprint(model: ImageTextModel, legacy: bool = False) -> str:
    digest = hashlib.sha256()
    if legacy:
        digest.update(model.model.config.to_json_string(use_diff=False).encode())
    else:  # where the model was loaded from is not what it is
        config = model.model.config.to_dict()
        config.pop("_name_or_path", None)
        for part in ("text_config", "vision_config"):
            if isinstance(config.get(part), dict):
                config[part].pop("_name_or_path", None)
        digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    digest.update(json.dumps(model.tokenizer.get_vocab(), sort_keys=True).encode())
    digest.update(json.dumps(asdict(model.image_spec), sort_keys=True).encode())
    digest.update(str(model.dtype).encode())
    with torch.no_grad():
        for name, tensor in model.model.state_dict().items():
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // 4096)
            sample = flat[::step].float().cpu().numpy()
            digest.update(name.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(sample.tobytes())
    return digest.hexdigest()[:16]


def _normalise(features: torch.Tensor) -> np.ndarray:
    features = features.float()
    return torch.nn.functional.normalize(features, dim=-1).cpu().numpy()


def pick_device(device: str | None = None) -> str:
    """`device` if given, else "cuda" when a GPU is visible, else "cpu"."""
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_clip(model: str | os.PathLike = DEFAULT_CLIP, device: str | None = None,
              dtype: str | None = None, match_fingerprint: str | None = None) -> ImageTextModel:
    """Load a CLIP or SigLIP checkpoint from a hub id or a local Hugging Face folder.

    `device` defaults to CUDA when visible, else CPU. `dtype` is auto (the default, or
    `$ZEROSHOT_DTYPE`), fp32, bf16, fp16 or int8: auto measures once per model and CPU which of fp32,
    bf16 and int8 is fastest while agreeing with fp32 (see `zeroshot.models.dtype`); the model's
    `dtype_choice` says what it measured. With auto, `match_fingerprint` (what an image index or a
    cache recorded) takes the dtype that gives that fingerprint, when one does: an index built in bf16
    keeps embedding in bf16 wherever it is opened. Offline and without a cached copy, raises a
    `UserError` that says how to get the weights.
    """
    name = str(model)
    local = Path(name).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise UserError(f"{local} is not a Hugging Face model folder (no config.json in it)")
        name = str(local)
    elif name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(f"{name}: no such model folder")
    device = _check_device(pick_device(device))
    return load_in_dtype(lambda: _load_fp32(name, local, device), dtype, device, _probe_run,
                         match_fingerprint)


def _load_fp32(name: str, local: Path, device: str) -> ImageTextModel:
    load_dtype = torch_dtype("fp32")  # the fingerprint is of fp32 weights; any other dtype is converted
    try:  # a local folder or a cached hub copy: no network
        net, tokenizer, image_processor = _load_parts(name, load_dtype, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - sorted below: a damaged local folder is the user's to fix
        if local.exists() and _damaged_folder_error(exc):
            # a truncated or tampered weights file (safetensors' own error), a config.json whose sizes
            # do not fit the weights (torch's size mismatch), a config value transformers rejects
            raise UserError(f"cannot load the CLIP model in {local}: {first_line(exc, 300)}") from exc
        if not isinstance(exc, OSError | ValueError | KeyError):
            raise
        missing = UserError(
            f"the CLIP model {name!r} is not on this machine and could not be downloaded: on a machine with "
            f"internet run `hf download {name} --local-dir DIR`, copy DIR here and pass `--clip-model DIR`")
        if not hub_reachable():  # say so now rather than after a minute of retries
            raise missing from exc
        try:
            net, tokenizer, image_processor = _load_parts(name, load_dtype, local_files_only=False)
        except (OSError, ValueError, KeyError) as download_error:
            raise missing from download_error
    if not hasattr(net, "get_image_features") or not hasattr(net, "get_text_features"):
        raise UserError(f"{name} is not an image-text (CLIP-family) model")
    if local.exists():
        _check_weights(net, local)
    return ImageTextModel(net.to(device), tokenizer, image_processor, name, device, load_dtype)


def _probe_texts() -> list[str]:
    """100 class prompts, as many as the benchmark's classes: with fewer, near-ties that would flip under
    another dtype are rarer in the probe than in real use."""
    words = PROBE_WORDS[:50]
    return [f"a photo of a {word}." for word in words] + [f"a drawing of the {word}" for word in words]


def _probe_pixels(spec: ImageSpec, count: int = 8, seed: int = 0) -> torch.Tensor:
    """`count` seeded smooth random images (coarse noise upsampled), normalised like real inputs."""
    height, width = spec.output_size
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand((count, 3, 7, 7), generator=generator)
    pixels = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear",
                                             align_corners=False)
    if spec.do_normalize:
        mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
        std = torch.tensor(spec.std).view(1, 3, 1, 1)
        pixels = (pixels - mean) / std
    return pixels


def _probe_run(model: ImageTextModel, dtype: str) -> ProbeRun:
    """The auto probe for CLIP: embed 8 synthetic images and 100 prompts; each image's best prompt."""
    variant = model if dtype == model.dtype_name else model.converted(dtype)
    pixels, prompts = _probe_pixels(model.image_spec), _probe_texts()

    def run() -> tuple[np.ndarray, np.ndarray]:
        images = variant.encode_images(pixels)
        texts = variant.encode_texts(prompts)
        return np.concatenate([images, texts]), images @ texts.T

    return run


def _damaged_folder_error(exc: BaseException) -> bool:
    """Whether loading a local folder failed on its contents (not on a bug of ours)."""
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    return bool(isinstance(exc, OSError | ValueError | KeyError | TypeError | RuntimeError | EOFError
                           | ArithmeticError | AttributeError)
                or "SafetensorError" in kinds)


def _check_weights(net, local: Path) -> None:
    """Refuse a local model with NaN or infinite weights (a tampered or damaged `train-clip` output):
    it would load, embed every input as NaN and rank at random, with exit code 0."""
    from zeroshot.validation import check_tensors

    state = {name: value for name, value in net.state_dict().items() if value.is_floating_point()}
    check_tensors(state, {name: (None, None) for name in state}, f"the CLIP model in {local}",
                  "train it again or restore the folder")


def _load_parts(name: str, torch_dtype: torch.dtype, local_files_only: bool):
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    with _quiet_transformers():
        model_class = AutoModel
        if _model_type(name) == "vision-text-dual-encoder":
            # Any image tower + a sentence-encoder text tower (what `zeroshot train-clip` writes): this
            # class honours the config's `text_pooling`, which transformers' own class ignores.
            from zeroshot.models.dual_encoder import PooledDualEncoder as model_class

            # transformers fills a tensor missing from the file with random values and drops one it
            # does not know, with a log line at most: for a folder `train-clip` wrote, that is a
            # damaged or tampered file, refused here rather than loaded as a random model
            net, info = model_class.from_pretrained(
                name, dtype=torch_dtype, local_files_only=local_files_only, output_loading_info=True)
            for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
                if info.get(kind):
                    found = sorted(info[kind])
                    raise ValueError(f"{kind.replace('_', ' ')} in its weights: {found[0]}"
                                     + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""))
        else:
            net = model_class.from_pretrained(name, dtype=torch_dtype, local_files_only=local_files_only)
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_files_only)
        image_processor = AutoImageProcessor.from_pretrained(name, local_files_only=local_files_only)
    return net, tokenizer, image_processor


def _model_type(name: str) -> str | None:
    """The `model_type` in a local folder's config.json (None for a hub id or an unreadable file)."""
    try:
        return json.loads((Path(name) / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def _check_device(device: str) -> str:
    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise UserError(f"device {device!r} is not available here: {first_line(exc)}") from exc
    return device


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    # The "falling back to the PIL image processor" notice and similar are noise to our users.
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hub_level = hub_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hub_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hub_logging.set_verbosity(hub_level)
        if bars:
            hf_logging.enable_progress_bar()


# The words of the auto-dtype probe's prompts (and of the random test models' tokenizer corpus).
PROBE_WORDS = (
    "cat dog car truck airplane bird ship horse deer frog shirt trouser pullover dress coat sandal "
    "sneaker bag ankle boot red green blue snow street house tree flower person face chair table "
    "dented metallic surface scratch rust defect art painting sculpture rendering sketch origami "
    "tattoo toy plushie cartoon close-up cropped bright dark blurry pixelated jpeg low resolution "
    "good large small nice clean dirty weird black and white"
).split()
