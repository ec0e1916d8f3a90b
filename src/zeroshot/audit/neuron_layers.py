"""The layers and units of a CLIP image tower, and one pass over a folder that records them all.

`Tower` names layers the same way for every image tower `load_clip` gives (`layerN`, `layerN.mlp`,
`pooled`; see `zeroshot.audit.neurons`) and hooks them; `collect_activations` embeds images once and
keeps every requested layer's activations from the same model calls.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from zeroshot.errors import UserError
from zeroshot.models.clip import ImageTextModel
from zeroshot.vision.embed import iter_image_embeddings

TOKEN_REDUCTIONS = ("mean", "cls")
LAYER_FORMS = "layerN (the residual stream after block N), layerN.mlp (its MLP units) or pooled"


# ---------------------------------------------------------------------------------------------------
# Layers and units of an image tower


@dataclass(frozen=True)
class LayerName:
    """A parsed layer name: block index (None for `pooled`) and kind (residual, mlp or pooled)."""

    block: int | None
    kind: str

    @classmethod
    def parse(cls, name: str) -> LayerName:
        text = name.strip()
        if text == "pooled":
            return cls(None, "pooled")
        head, _, tail = text.partition(".")
        if not head.startswith("layer") or tail not in ("", "mlp"):
            raise UserError(f"unknown layer {name!r}: name it {LAYER_FORMS}, e.g. layer3.mlp or layer-1.mlp")
        try:
            block = int(head[len("layer"):])
        except ValueError:
            raise UserError(f"unknown layer {name!r}: the block number after 'layer' must be a whole "
                            f"number (negative counts from the end), as in {LAYER_FORMS}") from None
        return cls(block, "mlp" if tail else "residual")


class Tower:
    """The image tower of an `ImageTextModel`: its blocks, widths, and where each layer is read."""

    def __init__(self, model: ImageTextModel) -> None:
        net = model.model
        self.model = model
        vision = getattr(net, "vision_model", None)
        if vision is None:
            raise UserError(f"{model.name}: no image tower (vision_model) to look into")
        self.blocks = _find_blocks(vision)
        self.hidden = _hidden_size(vision)
        self.down = [_down_projection(block, self.hidden) for block in self.blocks]
        self.mlp_width = int(self.down[0].in_features)
        self.projection = getattr(net, "visual_projection", None)
        self.has_cls = "siglip" not in net.config.model_type  # SigLIP pools by attention: no class token

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def valid_names(self) -> str:
        last = self.depth - 1
        names = f"layer0..layer{last} (residual stream, {self.hidden} units), layer0.mlp..layer{last}.mlp " \
                f"(MLP units, {self.mlp_width})"
        if self.projection is not None:
            names += f", pooled ({self.hidden} units)"
        return names + "; negative numbers count from the end (layer-1.mlp is the last block's MLP)"

    def resolve(self, name: str) -> str:
        """The canonical name of `name` (`layer-1.mlp` -> `layer3.mlp`); `UserError` if it does not exist."""
        parsed = LayerName.parse(name)
        if parsed.kind == "pooled":
            if self.projection is None:
                raise UserError(f"layer 'pooled' does not exist in {self.model.name} (no image projection); "
                                f"its layers: {self.valid_names()}")
            return "pooled"
        block = parsed.block if parsed.block >= 0 else self.depth + parsed.block
        if not 0 <= block < self.depth:
            raise UserError(f"layer {name!r} does not exist: the image tower has {self.depth} blocks; its "
                            f"layers: {self.valid_names()}")
        return f"layer{block}" + (".mlp" if parsed.kind == "mlp" else "")

    def width(self, name: str) -> int:
        return self.mlp_width if name.endswith(".mlp") else self.hidden

    @contextmanager
    def capture(self, layers: Sequence[str], tokens: str, keep_graph: bool = False) -> Iterator[dict]:
        """Hooks on `layers` (canonical names): while open, each forward call appends to `found[layer]`
        one (batch, units) tensor, reduced over tokens (`tokens`: mean or cls). `keep_graph` keeps the
        autograd graph (feature visualisation); otherwise the values are detached float32 on the CPU."""
        found: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
        handles = []

        def keep(layer: str, value: torch.Tensor) -> None:
            if value.ndim == 3:
                value = value.mean(dim=1) if tokens == "mean" else value[:, 0]
            found[layer].append(value if keep_graph else value.detach().float().cpu())

        for layer in layers:
            if layer == "pooled":
                handles.append(self.projection.register_forward_pre_hook(
                    lambda _m, args, layer=layer: keep(layer, args[0])))
                continue
            parsed = LayerName.parse(layer)
            if parsed.kind == "mlp":  # the down projection's input: the MLP's units after the activation
                handles.append(self.down[parsed.block].register_forward_pre_hook(
                    lambda _m, args, layer=layer: keep(layer, args[0])))
            else:
                handles.append(self.blocks[parsed.block].register_forward_hook(
                    lambda _m, _args, out, layer=layer: keep(layer, out[0] if isinstance(out, tuple)
                                                             else out)))
        try:
            yield found
        finally:
            for handle in handles:
                handle.remove()


def _find_blocks(vision: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer blocks: the first ModuleList named `layers` (CLIP, SigLIP) or `layer` (ViT)."""
    for name, module in vision.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layers", "layer") \
                and len(module) > 0:
            return module
    raise UserError("cannot find the transformer blocks of this image tower (only ViT towers are supported)")


def _hidden_size(vision: torch.nn.Module) -> int:
    config = getattr(vision, "config", None)
    if config is not None and getattr(config, "hidden_size", None):
        return int(config.hidden_size)
    raise UserError("cannot read the hidden size of this image tower")


def _down_projection(block: torch.nn.Module, hidden: int) -> torch.nn.Module:
    """The MLP's second linear layer (wide -> hidden): its input is the MLP's hidden units. Recognised by
    its `in_features`/`out_features`, so an int8 (dynamically quantised) Linear is found too."""
    for module in reversed(list(block.modules())):
        if isinstance(getattr(module, "in_features", None), int) and module.out_features == hidden \
                and module.in_features != hidden:
            return module
    raise UserError("cannot find the MLP of this image tower's blocks")


# ---------------------------------------------------------------------------------------------------
# One pass over the images


@dataclass
class Activations:
    """The activation matrix of every requested layer over the images that could be read."""

    paths: list[str]
    labels: list[str | None]
    embeddings: np.ndarray  # (N, d) L2-normalised joint image embeddings, from the same pass
    values: dict[str, np.ndarray]  # layer -> (N, units) float32
    skipped: list[dict] = field(default_factory=list)
    forward_calls: int = 0


def collect_activations(model: ImageTextModel, tower: Tower, sources: Sequence, layers: Sequence[str],
                        tokens: str, batch_size: int = 32, workers: int = 2,
                        progress: bool = False) -> Activations:
    """Embed `sources` once, batch by batch, with hooks on every layer: one model call per batch gives
    the joint embeddings and every layer's activations together."""
    values: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    kept, embeddings, skipped, calls = [], [], [], 0
    with tower.capture(layers, tokens) as found:
        for batch in iter_image_embeddings(model, sources, batch_size=batch_size, num_workers=workers,
                                           progress=progress):
            if batch.indices:
                calls += 1
                for layer in layers:
                    values[layer].append(torch.cat(found[layer]).numpy())
                    found[layer].clear()
                embeddings.append(batch.embeddings)
                kept.extend(batch.indices)
            skipped.extend({"index": index, "error": error} for index, error in batch.failures)
    dim = model.embedding_dim
    return Activations(
        [str(sources[i]) if isinstance(sources[i], str | Path) else f"#{i}" for i in kept],
        [None] * len(kept),
        np.concatenate(embeddings) if embeddings else np.zeros((0, dim), np.float32),
        {layer: np.concatenate(parts) if parts else np.zeros((0, tower.width(layer)), np.float32)
         for layer, parts in values.items()}, skipped, calls)


