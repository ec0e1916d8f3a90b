"""Feature visualisation for units of a CLIP image tower: Lucid's Fourier parametrisation with
decorrelated colours, and its transformation robustness, in torch alone (no torchvision, no lucent)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from zeroshot.audit.neuron_layers import Tower
from zeroshot.models.clip import ImageTextModel
from zeroshot.vision.transforms import torch_preprocess

# ---------------------------------------------------------------------------------------------------
# Feature visualisation: Lucid's parametrisation and transformation robustness in torch


# Lucid's colour correlation (the square root of ImageNet's colour covariance, from its SVD), scaled so
# its largest column has norm 1: optimising in decorrelated colours keeps one channel from dominating.
_COLOUR_SQRT = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32)
COLOUR_CORRELATION = _COLOUR_SQRT / np.max(np.linalg.norm(_COLOUR_SQRT, axis=0))


class FourierImage(torch.nn.Module):
    """A batch of RGB images parametrised by their Fourier spectrum (Lucid's `fft_image` with
    `decorrelate=True`, sigmoid output).

    Each frequency's coefficient is scaled by 1/f (`decay_power` 1), so a gradient step changes low
    frequencies as readily as high ones: plain pixel ascent on a network's gradient piles up high-
    frequency patterns that look like adversarial noise. The spectrum is real/imaginary pairs of
    shape (batch, 3, H, W//2+1, 2), initialised N(0, sd) from `generator`; the inverse FFT (orthonormal,
    divided by Lucid's constant 4) gives decorrelated colour planes, mixed back to RGB by the colour
    correlation matrix and squashed to (0, 1) by a sigmoid. `grey`: one plane, the same in R, G and B (for
    a tower trained on grey images, which never saw colour: colour would be free to wander).
    """

    def __init__(self, batch: int, height: int, width: int, generator: torch.Generator | None = None,
                 sd: float = 0.01, decay_power: float = 1.0, grey: bool = False) -> None:
        super().__init__()
        self.size = (height, width)
        self.grey = grey
        fy = np.fft.fftfreq(height)[:, None]
        fx = np.fft.rfftfreq(width)[None, :]
        freqs = np.sqrt(fx * fx + fy * fy)
        scale = 1.0 / np.maximum(freqs, 1.0 / max(height, width)) ** decay_power
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32)[None, None, ..., None])
        self.register_buffer("colour", torch.tensor(COLOUR_CORRELATION.T))
        shape = (batch, 1 if grey else 3, *freqs.shape, 2)
        self.spectrum = torch.nn.Parameter(torch.randn(shape, generator=generator) * sd)

    def forward(self) -> torch.Tensor:
        """(batch, 3, H, W) in (0, 1)."""
        spectrum = torch.view_as_complex((self.scale * self.spectrum).contiguous())
        planes = torch.fft.irfftn(spectrum, s=self.size, norm="ortho") / 4.0
        if self.grey:
            return torch.sigmoid(planes).expand(-1, 3, -1, -1)
        rgb = torch.einsum("bchw,cd->bdhw", planes, self.colour)
        return torch.sigmoid(rgb)


def robustness(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Lucid's standard transforms, scaled to the image side (Lucid's numbers are for 224 pixels):
    pad with grey, jitter, scale by 0.9-1.1, rotate by -10..10 degrees, jitter again. Random choices come
    from `generator`, so a seed fixes them; every step is a torch operation, so gradients pass through."""
    side = max(pixels.shape[-2:])
    unit = side / 224
    pad, jitter = max(1, round(12 * unit)), max(1, round(8 * unit))

    def choice(options: Sequence) -> object:
        return options[int(torch.randint(len(options), (1,), generator=generator))]

    def crop(t: torch.Tensor, d: int) -> torch.Tensor:
        # Lucid's jitter: a random crop d pixels smaller (a shift of 0..d pixels)
        dy, dx = int(torch.randint(d + 1, (1,), generator=generator)), int(torch.randint(d + 1, (1,),
                                                                                       generator=generator))
        h, w = t.shape[-2:]
        return t[..., dy:h - d + dy, dx:w - d + dx]

    out = F.pad(pixels, [pad] * 4, mode="constant", value=0.5)
    out = crop(out, jitter)
    factor = float(choice([1 + (i - 5) / 50 for i in range(11)]))
    h, w = out.shape[-2:]
    out = F.interpolate(out, size=(max(1, math.ceil(h * factor)), max(1, math.ceil(w * factor))),
                        mode="bilinear", align_corners=False)
    angle = math.radians(float(choice(list(range(-10, 11)) + 5 * [0])))
    if angle:
        cos, sin = math.cos(angle), math.sin(angle)
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=out.dtype, device=out.device)
        theta = theta.expand(out.shape[0], 2, 3)
        grid = F.affine_grid(theta, list(out.shape), align_corners=False)
        out = F.grid_sample(out, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return crop(out, max(1, jitter // 2))


@dataclass
class Visualisation:
    """Optimised images of one layer's units: (units, H, W, 3) uint8, and the unit's activation on the
    untransformed image at the start and at the end."""

    layer: str
    units: list[int]
    pixels: np.ndarray
    start: list[float]
    end: list[float]
    seconds: float
    grey: bool = False


def visualise_units(model: ImageTextModel, tower: Tower, layer: str, units: Sequence[int],
                    tokens: str = "mean", steps: int = 256, lr: float = 0.05, seed: int = 0,
                    batch: int = 16, progress: bool = False, grey: bool = False) -> Visualisation:
    """One image per unit, by gradient ascent on the unit's activation (`tokens`-reduced, as the dataset
    examples) through `robustness`, in `FourierImage`'s parametrisation.

    Units are optimised `batch` at a time, one image each, in one forward pass per step. Seeded: unit
    u's starting spectrum comes from seed and u; the transforms of a step from the seed. On the CPU with
    the same thread count, the same arguments give the same pixels byte for byte.
    """
    spec = model.image_spec
    height, width = spec.output_size
    net = model.model
    started = time.perf_counter()
    frozen = [(p, p.requires_grad) for p in net.parameters()]
    images, start, end = [], [], []
    try:
        for p, _ in frozen:
            p.requires_grad_(False)
        chunks = [list(units[i:i + batch]) for i in range(0, len(units), batch)]
        bar = tqdm(total=steps * len(chunks), desc=f"visualising {layer}", unit="step", disable=not progress,
                   leave=False)
        for chunk in chunks:
            rows = torch.arange(len(chunk), device=model.device)
            index = torch.tensor(chunk, device=model.device)
            inits = [FourierImage(1, height, width, torch.Generator().manual_seed(_unit_seed(seed, u)),
                                  grey=grey) for u in chunk]
            param = FourierImage(len(chunk), height, width, torch.Generator().manual_seed(0), grey=grey)
            with torch.no_grad():
                param.spectrum.copy_(torch.cat([init.spectrum for init in inits]))
            param = param.to(model.device)
            generator = torch.Generator().manual_seed(seed)
            optimiser = torch.optim.AdamW([param.spectrum], lr=lr, weight_decay=0.0)

            def activation(pixels: torch.Tensor, rows: torch.Tensor = rows,
                           index: torch.Tensor = index) -> torch.Tensor:
                # each image's own unit: image i of the batch is optimised for unit chunk[i]
                with tower.capture([layer], tokens, keep_graph=True) as found:
                    net.get_image_features(pixel_values=torch_preprocess(pixels, spec).to(model.dtype))
                return found[layer][0][rows, index].float()

            with torch.no_grad():
                start.extend(activation(param()).tolist())
            with torch.enable_grad():
                for _ in range(steps):
                    optimiser.zero_grad()
                    loss = -activation(robustness(param(), generator)).sum()
                    loss.backward()
                    optimiser.step()
                    bar.update(1)
            with torch.no_grad():
                final = param()
                end.extend(activation(final).tolist())
                images.append((final.permute(0, 2, 3, 1).cpu().numpy() * 255).round().clip(0, 255)
                              .astype(np.uint8))
        bar.close()
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
    pixels = np.concatenate(images) if images else np.zeros((0, height, width, 3), np.uint8)
    return Visualisation(layer, list(units), pixels, start, end, time.perf_counter() - started, grey)


def _unit_seed(seed: int, unit: int) -> int:
    return (seed * 1_000_003 + unit) % (2**63)


