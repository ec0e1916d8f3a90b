"""Typographic attacks on CLIP: write a class name on an image, see whether the prediction follows it.

Goh et al. (2021, "Multimodal neurons in artificial neural networks") found that a handwritten "iPod"
on an apple makes CLIP see an iPod. This audit writes a class name from the label set onto every
image with Pillow, at several text sizes, positions, colours and opacities, and measures the share of
images whose zero-shot top-1 flips to the written class, against the text size.

Where the text goes: inside the image's central square, the part a CLIP model keeps after its
shortest-side resize and centre crop, so the model always sees all of it. The size is the font size as
a fraction of that square's side. A text wider than the square (less margins) is refused, not cut.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from zeroshot.audit.report import (
    AuditInterrupted,
    Report,
    esc,
    figure_png,
    interval,
    new_figure,
    new_grid,
    pct,
    table,
)
from zeroshot.audit.stats import proportion
from zeroshot.errors import UserError
from zeroshot.models.clip import ImageTextModel
from zeroshot.validation import check_labels
from zeroshot.vision.classify import ZeroShotImageClassifier
from zeroshot.vision.images import ImageError, load_image

COLOURS = {"white": (255, 255, 255), "black": (0, 0, 0), "red": (220, 20, 20), "yellow": (250, 220, 0),
           "blue": (20, 60, 220)}
POSITIONS = ("top", "center", "bottom")
DEFAULT_SIZES = (0.04, 0.06, 0.08, 0.1)
DEFAULT_COLOURS = ("white", "black", "red")
DEFAULT_OPACITIES = (1.0, 0.6)
MARGIN = 0.04  # of the square's side, kept free around the text
_FONT_FILES = ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",  # Debian fonts-dejavu-core
               "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf")


class TextDoesNotFit(UserError):
    """The text at the asked size is wider or taller than the part of the image CLIP sees."""


def font_path() -> str | None:
    """DejaVu Sans Bold from the system, else matplotlib's copy of it; None for Pillow's default font."""
    for candidate in _FONT_FILES:
        if os.path.isfile(candidate):
            return candidate
    try:
        import matplotlib

        bundled = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
        return str(bundled) if bundled.is_file() else None
    except ImportError:
        return None


def load_font(pixels: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = font_path()
    return ImageFont.truetype(path, pixels) if path else ImageFont.load_default(size=pixels)


@dataclass(frozen=True)
class TextStyle:
    """How the text is drawn: font size (fraction of the visible square), place, colour, opacity."""

    size: float
    position: str = "center"
    colour: str = "white"
    opacity: float = 1.0

    def check(self) -> None:
        if not 0 < self.size < 1:
            raise UserError(f"a text size is a fraction of the image side between 0 and 1, got {self.size}")
        if self.position not in POSITIONS:
            raise UserError(f"unknown position {self.position!r}: choose from {', '.join(POSITIONS)}")
        if self.colour not in COLOURS:
            raise UserError(f"unknown colour {self.colour!r}: choose from {', '.join(COLOURS)}")
        if not 0 < self.opacity <= 1:
            raise UserError(f"an opacity is in (0, 1], got {self.opacity}")


def visible_square(width: int, height: int) -> tuple[int, int, int]:
    """(left, top, side) of the central square a centre crop keeps."""
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side


def place_text(size: tuple[int, int], text: str, style: TextStyle, name: str = "the image"):
    """Font, drawing origin and ink box (left, top, right, bottom) of `text` on an image of `size`.

    Raises `TextDoesNotFit` when the text is wider or taller than the visible square less its margins.
    """
    left, top, side = visible_square(*size)
    margin = round(MARGIN * side)
    font = load_font(max(4, round(style.size * side)))
    x0, y0, x1, y1 = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    ink_w, ink_h = x1 - x0, y1 - y0
    room = side - 2 * margin
    if ink_w > room or ink_h > room:
        raise TextDoesNotFit(f"{name}: the text {text!r} at size {style.size:g} is {ink_w}x{ink_h} pixels, "
                             f"more than the {room}x{room} the image can hold: use smaller --sizes or a "
                             "larger image")
    x = left + (side - ink_w) // 2
    y = {"top": top + margin, "center": top + (side - ink_h) // 2,
         "bottom": top + side - margin - ink_h}[style.position]
    return font, (x - x0, y - y0), (x, y, x + ink_w, y + ink_h)


def render_text(image: Image.Image, text: str, style: TextStyle,
                name: str = "the image") -> tuple[Image.Image, tuple[int, int, int, int]]:
    """A copy of `image` (RGB) with `text` drawn on it, and the box the text lies in."""
    style.check()
    font, origin, box = place_text(image.size, text, style, name)
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).text(origin, text, font=font,
                               fill=(*COLOURS[style.colour], round(255 * style.opacity)))
    attacked = Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")
    return attacked, box


@dataclass
class TypographicResult:
    """Clean and attacked predictions of every image; `to_dict()` is the JSON report."""

    model: str
    labels: list[str]
    templates: list[str]
    sizes: list[float]
    positions: list[str]
    colours: list[str]
    opacities: list[float]
    variants: int
    seed: int
    font: str
    images: list[dict]
    attacks: list[dict]
    skipped: list[dict]
    complete: bool = True
    timing: dict = field(default_factory=dict)

    def summary(self) -> dict:
        eligible = [a for a in self.attacks if a["eligible"]]

        def rates(key: str, values: Sequence) -> dict:
            out = {}
            for value in values:
                rows = [a for a in eligible if a[key] == value]
                out[str(value)] = {"flipped": proportion(sum(a["flipped"] for a in rows), len(rows)),
                                   "changed": proportion(sum(a["changed"] for a in rows), len(rows))}
            return out

        return {"attacks": len(self.attacks), "eligible_attacks": len(eligible),
                "images": len(self.images), "skipped_images": len(self.skipped),
                "overall": {"flipped": proportion(sum(a["flipped"] for a in eligible), len(eligible)),
                            "changed": proportion(sum(a["changed"] for a in eligible), len(eligible))},
                "by_size": rates("size", self.sizes), "by_position": rates("position", self.positions),
                "by_colour": rates("colour", self.colours), "by_opacity": rates("opacity", self.opacities)}

    def to_dict(self) -> dict:
        return {"audit": "typographic", "model": self.model, "complete": self.complete, "seed": self.seed,
                "labels": self.labels, "templates": self.templates, "font": self.font,
                "sizes": self.sizes, "positions": self.positions, "colours": self.colours,
                "opacities": self.opacities, "variants_per_size": self.variants,
                "note": "CLIP numbers mean something only for a trained model: a random-weight model "
                        "tests the mechanics, not the model.",
                "summary": self.summary(), "images": self.images, "attacks": self.attacks,
                "skipped": self.skipped}


def _top(classifier: ZeroShotImageClassifier, probabilities: np.ndarray, k: int = 3) -> list[list]:
    return [[label, p] for label, p in classifier.top_k_of(probabilities, k)]


@dataclass(frozen=True)
class TypographicConfig:
    """What the typographic audit attacks and how; every rule in `check`, run when it is built, so
    before the model loads. `templates` is what `get_templates` takes (a shipped set, a file, one
    template or a list); `limit` keeps the first N images; `text` None writes a seeded random class
    other than each image's clean top-1."""

    labels: tuple[str, ...]
    images: tuple[str, ...]
    sizes: tuple[float, ...] = DEFAULT_SIZES
    positions: tuple[str, ...] = POSITIONS
    colours: tuple[str, ...] = DEFAULT_COLOURS
    opacities: tuple[float, ...] = DEFAULT_OPACITIES
    variants: int = 2
    text: str | None = None
    seed: int = 0
    templates: tuple[str, ...] | str | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        from zeroshot.vision.templates import get_templates

        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "images", tuple(str(path) for path in self.images))
        object.__setattr__(self, "sizes", tuple(float(size) for size in self.sizes))
        object.__setattr__(self, "positions", tuple(self.positions))
        object.__setattr__(self, "colours", tuple(self.colours))
        object.__setattr__(self, "opacities", tuple(float(opacity) for opacity in self.opacities))
        object.__setattr__(self, "templates", tuple(get_templates(self.templates)))  # a bad file fails here
        self.check()

    def check(self) -> None:
        """Every rule of the audit that needs no model, once. (Whether each text fits each image is
        checked by `run_typographic_audit` once the images are read, before any attack runs.)"""
        check_labels(self.labels)
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be at least 1, got {self.limit}")
        if not self.images:
            raise UserError("no image files to attack: give image files, folders or globs")
        if self.text is not None and self.text not in self.labels:
            raise UserError(f"--text {self.text!r} is not one of the labels: the audit measures flips to the "
                            "written class, so add it to --labels")
        if self.variants < 1:
            raise UserError(f"--variants must be at least 1, got {self.variants}")
        if not self.sizes or not self.positions or not self.colours or not self.opacities:
            raise UserError("give at least one size, position, colour and opacity")
        for style in (TextStyle(s, p, c, o) for s in self.sizes for p in self.positions for c in self.colours
                      for o in self.opacities):
            style.check()

    @property
    def attacked(self) -> tuple[str, ...]:
        """The images attacked: the first `limit` of `images`."""
        return self.images[:self.limit] if self.limit else self.images


def run_typographic_audit(model: ImageTextModel, config: TypographicConfig, cache_dir=None,
                          progress: bool = False) -> TypographicResult:
    """Attack every image: `variants` renderings per size, each with a seeded position, colour, opacity.

    The written class is `config.text` for every image, or else one drawn (seeded) from the labels
    other than the image's clean top-1. An attack flips when the attacked top-1 is the written class;
    attacks on images whose clean top-1 already is the written class are recorded but not counted.
    `config` was checked when built; that every text fits every image is checked here, before the first
    attack. `cache_dir` is the label-embedding cache (`ZeroShotImageClassifier`'s; False: none).
    """
    classifier = ZeroShotImageClassifier(model, list(config.labels), list(config.templates),
                                         cache_dir=cache_dir)
    labels = list(classifier.labels)
    sizes, positions, colours, opacities = config.sizes, config.positions, config.colours, config.opacities
    variants, text, seed = config.variants, config.text, config.seed
    images = config.attacked
    loaded, skipped = [], []
    for path in images:
        try:
            loaded.append((str(path), load_image(path)))
        except ImageError as exc:
            skipped.append({"path": str(path), "error": str(exc)})
    if not loaded:
        raise UserError("no image could be read" + (f" ({skipped[0]['error']})" if skipped else ""))
    clean = classifier.predict_proba([image for _, image in loaded])
    rng = np.random.default_rng(seed)
    plans = []
    for (path, image), probabilities in zip(loaded, clean, strict=True):
        before = labels[int(np.argmax(probabilities))]
        written = text if text is not None else str(rng.choice([x for x in labels if x != before]))
        styles = [TextStyle(float(size), str(rng.choice(list(positions))), str(rng.choice(list(colours))),
                            float(rng.choice(list(opacities)))) for size in sizes for _ in range(variants)]
        for style in styles:
            place_text(image.size, written, style, path)  # refuse before any attack runs
        plans.append((path, image, probabilities, before, written, styles))
    result = TypographicResult(classifier.model.name, labels, list(classifier.templates),
                               [float(s) for s in sizes], list(positions), list(colours),
                               [float(o) for o in opacities], variants, seed, font_path() or "Pillow default",
                               images=[], attacks=[], skipped=skipped)
    started = time.perf_counter()
    try:
        for number, (path, image, probabilities, before, written, styles) in enumerate(
                tqdm(plans, desc="attacking", unit="image", disable=not progress)):
            rendered = [render_text(image, written, style, path) for style in styles]
            after = classifier.predict_proba([attacked for attacked, _ in rendered])
            index = labels.index(written)
            result.images.append({"index": number, "path": path, "size": list(image.size),
                                  "written": written, "before": _top(classifier, probabilities),
                                  "written_probability_before": probabilities[index]})
            for style, (_, box), row in zip(styles, rendered, after, strict=True):
                top1 = labels[int(np.argmax(row))]
                result.attacks.append({
                    "image": number, **asdict(style), "box": list(box), "written": written,
                    "before": before, "after": top1, "after_top": _top(classifier, row),
                    "written_probability_before": probabilities[index],
                    "written_probability_after": row[index],
                    "eligible": before != written, "flipped": top1 == written and before != written,
                    "changed": top1 != before})
    except KeyboardInterrupt:
        result.complete = False
        raise AuditInterrupted(result) from None
    seconds = time.perf_counter() - started
    result.timing = {"attacks": len(result.attacks), "seconds": seconds,
                     "seconds_per_attack": seconds / len(result.attacks) if result.attacks else None}
    return result


# ---------------------------------------------------------------------------------------------------
# The page


def typographic_report(result: TypographicResult, grid_images: int = 8) -> Report:
    """The HTML page, the flip-rate charts and the grid of attacked images."""
    summary = result.summary()
    report = Report("typographic", "Typographic attack audit (Goh et al. 2021)")
    report.paragraph(f"Model <b>{esc(result.model)}</b>; {summary['images']} images "
                     f"({summary['skipped_images']} unreadable, skipped), {summary['attacks']} attacked "
                     "copies; "
                     f"seed {result.seed}; font {esc(Path(result.font).name)}.", "meta")
    report.paragraph("The numbers describe this model only if it is a trained CLIP: with a random-weight "
                     "model they show that the audit runs, nothing about CLIP.", "note")
    if not result.complete:
        report.paragraph("Interrupted: only the images listed were attacked.", "warn")
    report.paragraph("A class name is written inside the part of each image CLIP sees. An attack "
                     "<b>flips</b> when the top-1 prediction becomes the written class; <b>changed</b> "
                     "counts any change of top-1. Intervals: Wilson 95 %.")
    report.heading("Flip rate against text size")
    rows = [[f"{float(size):g}", s["flipped"]["n"], pct(s["flipped"]["share"]),
             interval(s["flipped"]["low"], s["flipped"]["high"], percent=True), pct(s["changed"]["share"])]
            for size, s in summary["by_size"].items()]
    report.html(table(["text size (of image side)", "attacks", "flipped", "95 % interval", "changed"], rows))
    report.chart("flip-rate", _flip_chart(summary), "flip rate against text size")
    for key, title in (("by_position", "position"), ("by_colour", "colour"), ("by_opacity", "opacity")):
        rows = [[value, s["flipped"]["n"], pct(s["flipped"]["share"]),
                 interval(s["flipped"]["low"], s["flipped"]["high"], percent=True)]
                for value, s in summary[key].items()]
        report.html(f"<h3>By {title}</h3>" + table([title, "attacks", "flipped", "95 % interval"], rows))
    report.heading("Attacked images")
    if result.images:
        report.chart("grid", _grid(result, grid_images), "attacked images with predictions before and after")
    report.html("<details><summary>every attack</summary>" + table(
        ["image", "written", "size", "position", "colour", "opacity", "before", "after", "flipped"],
        [[result.images[a["image"]]["path"], a["written"], a["size"], a["position"], a["colour"],
          a["opacity"], a["before"], a["after"], a["flipped"]] for a in result.attacks]) + "</details>")
    if result.skipped:
        report.html("<h3>Skipped</h3>" + table(["file", "reason"],
                                               [[s["path"], s["error"]] for s in result.skipped]))
    return report


def _flip_chart(summary: dict) -> bytes:
    fig, ax = new_figure(6, 3.5)
    sizes = [float(s) for s in summary["by_size"]]
    for key, colour in (("flipped", "#d62728"), ("changed", "#7f7f7f")):
        shares = [s[key]["share"] or 0.0 for s in summary["by_size"].values()]
        lows = [s[key]["low"] or 0.0 for s in summary["by_size"].values()]
        highs = [s[key]["high"] or 0.0 for s in summary["by_size"].values()]
        ax.plot(sizes, shares, "o-", color=colour, label=f"top-1 {key}")
        ax.fill_between(sizes, lows, highs, color=colour, alpha=0.15)
    ax.set_xlabel("text size (font size / visible image side)")
    ax.set_ylabel("share of attacks")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return figure_png(fig)


def _grid(result: TypographicResult, n_images: int) -> bytes:
    """One row per image: the clean image, then the first variant at every size."""
    images = result.images[:n_images]
    columns = 1 + len(result.sizes)
    fig, axes = new_grid(len(images), columns, 2.2 * columns, 2.5 * len(images))
    for row, info in zip(axes, images, strict=True):
        original = load_image(info["path"])
        row[0].imshow(original)
        row[0].set_title(f"clean: {info['before'][0][0]} ({info['before'][0][1]:.2f})\n"
                        f"writes: {info['written']}", fontsize=7)
        attacks = [a for a in result.attacks if a["image"] == info["index"]]
        for ax, size in zip(row[1:], result.sizes, strict=True):
            attack = next(a for a in attacks if a["size"] == size)
            style = TextStyle(attack["size"], attack["position"], attack["colour"], attack["opacity"])
            ax.imshow(render_text(original, attack["written"], style)[0])
            mark = "FLIPPED" if attack["flipped"] else "kept" if not attack["changed"] else "changed"
            ax.set_title(f"size {size:g}: {attack['after']}\n({mark})", fontsize=7,
                         color="#d62728" if attack["flipped"] else "black")
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    return figure_png(fig)
