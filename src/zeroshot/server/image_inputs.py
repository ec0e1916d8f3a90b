"""Reading image requests: a multipart upload or JSON naming paths under the image roots.

Both forms become the same pydantic model plus decoded images, so each vision route is written once.
Every image goes through `zeroshot.vision.images.load_image` (the library's safe loader); the pixel
limit is checked from the header first so an oversized image is refused with 413 before it is decoded.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from PIL import Image
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from zeroshot.errors import UserError
from zeroshot.server.guard import BadRequest, NotJSON, parse_json
from zeroshot.server.security import resolve_under_roots
from zeroshot.server.settings import ServerSettings

M = TypeVar("M", bound=BaseModel)


async def parse_body(request: Request, model: type[M],
                     file_fields: tuple[str, ...]) -> tuple[M, dict[str, list]]:
    """The request's fields as `model`, and its uploaded files by field name (name, bytes).

    Multipart list fields may repeat (`-F labels=cat -F labels=dog`) or hold a JSON list or a
    comma-separated string. Raises 422 for fields that do not fit `model`, 400 for broken JSON and 415
    for other content types.
    """
    settings: ServerSettings = request.app.state.settings
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    uploads: dict[str, list] = {name: [] for name in file_fields}
    if content_type == "multipart/form-data":
        form = await request.form(max_files=settings.max_images_per_request * 2, max_fields=200)
        raw: dict[str, list[str]] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key not in uploads:
                    raise UserError(f"unexpected file field {key!r}; files go in "
                                    f"{', '.join(file_fields)}", 422)
                uploads[key].append((value.filename or key, await value.read()))
            else:
                raw.setdefault(key, []).append(value)
        data = _form_to_data(raw, model)
    elif content_type in ("application/json", ""):
        data = _json(await request.body() or b"null")
        if not isinstance(data, dict):
            raise UserError("the request body must be a JSON object (or a multipart form)", 422)
    else:
        raise UserError(f"unsupported content type {content_type!r}: send application/json or "
                        f"multipart/form-data", 415)
    try:
        return model.model_validate(data), uploads
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from exc


def _form_to_data(raw: dict[str, list[str]], model: type[BaseModel]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, values in raw.items():
        field = model.model_fields.get(key)
        if field is None or not _is_list(field.annotation):
            data[key] = values[-1] if len(values) == 1 else values
        elif len(values) == 1 and values[0].lstrip().startswith("["):
            try:
                data[key] = _json(values[0])
            except UserError as exc:
                if exc.status_code != 422:
                    raise
                raise UserError(f"field {key!r} is not a valid JSON list", 422) from None
        elif len(values) == 1:
            data[key] = [part.strip() for part in values[0].split(",") if part.strip()]
        else:
            data[key] = values
    return data


def _json(text: bytes | str) -> Any:
    """JSON through the guard's one decoder (its depth, integer and surrogate limits); the guard has
    already checked every body and form field this way, so this only keeps the rule in one place."""
    try:
        return parse_json(text)
    except NotJSON as exc:
        raise UserError(str(exc), 422 if isinstance(text, str) else 400) from None
    except BadRequest as exc:
        raise UserError(str(exc), exc.status) from None


def _is_list(annotation: Any) -> bool:
    """Whether a field's type is a list (possibly optional): `list[str] | None` is."""
    if get_origin(annotation) is list:
        return True
    return any(_is_list(argument) for argument in get_args(annotation))


def _pixels(data: bytes, max_pixels: int, name: str) -> int:
    """The image's pixel count from its header (0 if it is no image: `load_image` will say why)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError as exc:
        raise UserError(f"{name}: too many pixels (this server accepts at most {max_pixels:,})", 413) from exc
    except Exception:  # not an image at all: `load_image` says why
        return 0
    if width * height > max_pixels:
        raise UserError(f"{name}: {width}x{height} is {width * height:,} pixels; this server accepts at most "
                        f"{max_pixels:,} (--max-pixels)", 413)
    return width * height


def _decode(data: bytes, max_pixels: int, name: str) -> Image.Image:
    from zeroshot.vision.images import ImageError, load_image

    try:
        image = load_image(data, max_pixels=max_pixels)
    except ImageError as exc:
        raise UserError(str(exc).replace("image:", f"{name}:", 1), 422) from exc
    return image


def _read(real: Path, max_pixels: int, name: str) -> bytes:
    from zeroshot.vision.images import ImageError, read_image_bytes

    try:
        return read_image_bytes(real, max_pixels)
    except ImageError as exc:  # say it with the client's name for the file, not the server's path
        raise UserError(f"{name}: {str(exc).removeprefix(str(real) + ': ')}", 422) from exc
    except OSError as exc:
        raise UserError(f"{name}: cannot be read ({exc.strerror or 'error'})", 422) from exc


async def load_images(settings: ServerSettings, uploads: list[tuple[str, bytes]], paths: list[str],
                      ) -> list[tuple[str, Image.Image]]:
    """Decode uploads and paths (confined to the image roots) into (name, RGB image) pairs, in a thread.

    Every image's size is read from its header before any is decoded, so neither one image over
    `max_pixels` nor a request whose images add up to more than `max_request_pixels` costs any memory.
    """
    count = len(uploads) + len(paths)
    if count > settings.max_images_per_request:
        raise UserError(f"{count} images in one request; this server accepts at most "
                        f"{settings.max_images_per_request}", 413)
    located = [(os.fspath(path), resolve_under_roots(path, settings.image_roots)) for path in paths]

    def decode_all() -> list[tuple[str, Image.Image]]:
        sources = list(uploads) + [(name, _read(real, settings.max_pixels, name)) for name, real in located]
        total = sum(_pixels(data, settings.max_pixels, name) for name, data in sources)
        if total > settings.max_request_pixels:
            raise UserError(f"the images of this request add up to {total:,} pixels; this server decodes at "
                            f"most {settings.max_request_pixels:,} per request", 413)
        return [(name, _decode(data, settings.max_pixels, name)) for name, data in sources]

    return await run_in_threadpool(decode_all)


def with_image_urls(result: dict[str, Any], roots: list[Path]) -> dict[str, Any]:
    """Search results (`SearchResults.to_dict()`) with `url` on every hit whose file lies under an
    image root: the `/v1/image` address a browser or client fetches it from. A hit outside every root
    gets `url: null` (the server would refuse it); the rule for "under a root" is `resolve_under_roots`.
    """
    from urllib.parse import urlencode

    for hit in result.get("results", []):
        try:
            resolve_under_roots(hit["path"], roots)
        except UserError:
            hit["url"] = None
        else:
            hit["url"] = "/v1/image?" + urlencode({"path": hit["path"]})
    return result
