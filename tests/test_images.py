"""Safe image loading: every awkward file is either decoded correctly or refused with a reason,
and a batch with all of them in it still embeds every good image."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zeroshot.errors import UserError
from zeroshot.vision.images import MAX_PIXELS, ImageError, expand_paths, load_image


def _jpeg_bytes(image: Image.Image, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **save)
    return buffer.getvalue()


def _photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea())


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels, followed by one tiny IDAT chunk."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


# --- each awkward case on its own -------------------------------------------------------------------

def test_truncated_jpeg_is_refused_with_a_reason(tmp_path):
    data = _jpeg_bytes(_photo())
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_image(path)


def test_corrupt_bytes_are_refused(tmp_path):
    path = tmp_path / "corrupt.png"
    noise = np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + noise)
    with pytest.raises(ImageError, match="corrupt.png"):
        load_image(path)


def test_text_file_renamed_jpg_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are my notes, not a photo\n")
    with pytest.raises(ImageError, match="not an image file"):
        load_image(path)


def test_missing_file_and_folder_have_reasons(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "absent.jpg")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_grayscale_becomes_rgb_with_equal_channels():
    gray = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16), mode="L")
    rgb = np.asarray(load_image(_jpeg_bytes(gray)))
    assert rgb.shape == (16, 16, 3)
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])


def test_cmyk_jpeg_becomes_rgb_with_the_right_colour():
    cyan = Image.new("CMYK", (32, 32), (255, 0, 0, 0))
    rgb = load_image(_jpeg_bytes(cyan))
    assert rgb.mode == "RGB"
    red, green, blue = np.asarray(rgb)[16, 16].astype(int)
    assert red < 20 and green > 235 and blue > 235


def test_rgba_transparent_pixels_become_white_and_opaque_ones_keep_their_colour():
    image = Image.new("RGBA", (4, 2), (255, 0, 0, 0))
    image.putpixel((0, 0), (0, 0, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    rgb = np.asarray(load_image(buffer.getvalue()))
    assert tuple(rgb[0, 0]) == (0, 0, 255)
    assert tuple(rgb[1, 3]) == (255, 255, 255)


def test_la_gray_with_alpha_is_composited_on_white():
    image = Image.new("LA", (2, 1), (0, 0))
    image.putpixel((0, 0), (0, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    rgb = np.asarray(load_image(buffer.getvalue()))
    assert tuple(rgb[0, 0]) == (0, 0, 0) and tuple(rgb[0, 1]) == (255, 255, 255)


def test_palette_with_transparency_is_composited_on_white():
    image = Image.new("P", (2, 1))
    image.putpalette([0, 255, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=1)  # palette entry 1 (red) is see-through
    loaded = Image.open(io.BytesIO(buffer.getvalue()))
    assert loaded.mode == "P" and "transparency" in loaded.info
    rgb = np.asarray(load_image(buffer.getvalue()))
    assert tuple(rgb[0, 0]) == (0, 255, 0) and tuple(rgb[0, 1]) == (255, 255, 255)


def test_16_bit_png_keeps_its_brightness(tmp_path):
    ramp = (np.linspace(0, 65535, 64).astype(np.uint16).reshape(8, 8))
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb = np.asarray(load_image(path))
    assert rgb.dtype == np.uint8 and rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255
    assert np.allclose(rgb[..., 0], ramp / 257.0, atol=0.51)


def test_dark_16_bit_png_is_not_stretched(tmp_path):
    dark = np.full((4, 4), 1000, dtype=np.uint16)
    dark[0, 0] = 2000
    path = tmp_path / "dark.png"
    Image.fromarray(dark).save(path)
    rgb = np.asarray(load_image(path))
    assert rgb.max() <= 8  # 2000/257, not 255: a stretch would turn a dark frame white


def test_exif_rotated_jpeg_is_turned_upright():
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))  # left half red as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    upright = np.asarray(load_image(_jpeg_bytes(stored, exif=exif)))
    assert upright.shape == (40, 20, 3)  # portrait after rotation
    top, bottom = upright[5, 10], upright[35, 10]
    assert top[0] > 200 and top[2] < 60  # the stored left (red) is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_one_pixel_image_loads():
    image = load_image(_jpeg_bytes(Image.new("RGB", (1, 1), (10, 200, 30))))
    assert image.size == (1, 1) and image.mode == "RGB"


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    # 50000 x 50000 would be 7.5 GB of RGB; the file is ~100 bytes. The reason names the pixel count,
    # which is checked on the header: had the decoder run, the tiny IDAT would give "truncated" instead.
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(50_000, 50_000))
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(path)


def test_image_over_our_pixel_limit_but_under_pillows_is_refused_by_ours(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(_png_header_only(10_000, 10_000))  # 100 MP: Pillow only warns, we refuse
    assert 10_000 * 10_000 > MAX_PIXELS
    with pytest.raises(ImageError, match=r"10000x10000 is more than"):
        load_image(path)


# --- all of them in one batch -------------------------------------------------------------------------

def _awkward_folder(folder: Path) -> dict[str, bool]:
    """Write one file per awkward case; return name -> whether it should be embedded."""
    photo = _photo()
    cases: dict[str, bool] = {}

    def save(name: str, payload: bytes, ok: bool) -> None:
        (folder / name).write_bytes(payload)
        cases[name] = ok

    good = _jpeg_bytes(photo)
    save("a_good.jpg", good, True)
    save("b_truncated.jpg", good[: len(good) // 3], False)
    save("c_corrupt.png", b"\x89PNG\r\n\x1a\n" + b"\x07" * 300, False)
    save("d_text.jpg", b"hello, I am text", False)
    save("e_gray.jpg", _jpeg_bytes(photo.convert("L")), True)
    save("f_cmyk.jpg", _jpeg_bytes(photo.convert("CMYK")), True)
    for name, mode in (("g_rgba.png", "RGBA"), ("h_la.png", "LA"), ("i_palette.png", "P")):
        buffer = io.BytesIO()
        converted = photo.convert(mode)
        converted.save(buffer, format="PNG", **({"transparency": 0} if mode == "P" else {}))
        save(name, buffer.getvalue(), True)
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257).save(buffer, format="PNG")
    save("j_16bit.png", buffer.getvalue(), True)
    exif = Image.Exif()
    exif[0x0112] = 8
    save("k_exif.jpg", _jpeg_bytes(photo, exif=exif), True)
    save("l_tiny.png", _png_bytes(Image.new("RGB", (1, 1), (1, 2, 3))), True)
    save("m_bomb.png", _png_header_only(50_000, 50_000), False)
    save("n_last_good.jpg", good, True)
    return cases


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_batch_of_awkward_files_embeds_every_good_one_and_reports_every_bad_one(tmp_path, tiny_clip):
    from zeroshot.vision.embed import iter_image_embeddings

    cases = _awkward_folder(tmp_path)
    paths = [tmp_path / name for name in sorted(cases)]
    batches = list(iter_image_embeddings(tiny_clip, paths, batch_size=len(paths), progress=False))
    assert len(batches) == 1
    batch = batches[0]
    embedded = {paths[i].name for i in batch.indices}
    failed = {paths[i].name: reason for i, reason in batch.failures}
    assert embedded == {name for name, ok in cases.items() if ok}
    assert set(failed) == {name for name, ok in cases.items() if not ok}
    assert all(name in reason for name, reason in failed.items())  # each reason names its file
    assert batch.embeddings.shape == (len(embedded), tiny_clip.embedding_dim)
    assert np.allclose(np.linalg.norm(batch.embeddings, axis=1), 1.0, atol=1e-5)
    first, last = batch.indices.index(0), batch.indices.index(len(paths) - 1)
    assert np.allclose(batch.embeddings[first], batch.embeddings[last], atol=1e-6)  # same photo, same vector


# --- expand_paths ------------------------------------------------------------------------------------

def test_expand_paths_walks_folders_expands_globs_and_dedupes(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name in ("b.jpg", "a.PNG", "notes.txt", ".DS_Store.jpg", "sub/c.webp", ".hidden/d.jpg"):
        (tmp_path / name).write_bytes(b"x")
    found = expand_paths([tmp_path, tmp_path / "b.jpg", str(tmp_path / "sub" / "*.webp")])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.PNG", "b.jpg", "sub/c.webp"]
    assert expand_paths([tmp_path / "notes.txt"]) == [tmp_path / "notes.txt"]  # named explicitly: kept
    assert [p.name for p in expand_paths([tmp_path], recursive=False)] == ["a.PNG", "b.jpg"]


def test_expand_paths_refuses_what_matches_nothing(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        expand_paths([tmp_path / "nothing-*.jpg"])
    with pytest.raises(UserError, match="empty path"):
        expand_paths([""])


def test_expand_paths_does_not_loop_on_symlinked_folders(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "x.jpg").write_bytes(b"x")
    (tmp_path / "real" / "loop").symlink_to(tmp_path / "real", target_is_directory=True)
    assert [p.name for p in expand_paths([tmp_path])] == ["x.jpg"]
