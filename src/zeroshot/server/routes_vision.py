"""Vision endpoints: image classification (micro-batched), image search, detection, and image files.

Each accepts a multipart upload or JSON naming paths under `--image-root`; see `image_inputs`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from zeroshot.errors import UserError
from zeroshot.server.image_inputs import load_images, parse_body, with_image_urls
from zeroshot.server.resources import ImageTask, Resources, unprocessable
from zeroshot.server.security import resolve_under_roots
from zeroshot.validation import check_labels
from zeroshot.vision.classify import Prediction, classification_to_dict
from zeroshot.vision.templates import get_templates

router = APIRouter(tags=["vision"])


def _resources(request: Request) -> Resources:
    return request.app.state.resources


def _both_forms(model: type[BaseModel], files: str) -> dict[str, Any]:
    """OpenAPI for a body that is JSON or multipart (the route reads `Request` itself)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    form = {"type": "object", "properties": {files: {"type": "array", "items": {"type": "string",
                                                                                   "format": "binary"}},
                                             **schema.get("properties", {})}}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema},
                                                          "multipart/form-data": {"schema": form}}}}


# --- classification -------------------------------------------------------------------------------
class ClassifyImageRequest(BaseModel):
    """Labels to score, and images as `paths` (JSON) or uploaded `files` (multipart).

    Labels and templates are checked by the library, as for `zeroshot classify-images`.
    """

    model_config = ConfigDict(extra="forbid")

    labels: list[str] = Field(description="Class names (at least two); each is put into the templates.")
    templates: list[str] | None = Field(None, description="Prompt templates with {} or {label}; "
                                                          "default: CLIP's 80.")
    paths: list[str] = Field(default_factory=list, description="Image paths under the server's image roots.")
    top_k: int = Field(5, ge=1, le=1000)


@router.post("/v1/classify/image", openapi_extra=_both_forms(ClassifyImageRequest, "files"))
async def classify_image(request: Request) -> dict[str, Any]:
    """Zero-shot image classification (`classification_to_dict`); concurrent requests with the same
    labels share one CLIP call."""
    resources = _resources(request)
    body, uploads = await parse_body(request, ClassifyImageRequest, ("files",))
    with unprocessable():
        labels = check_labels(body.labels)
        if body.templates is not None:
            get_templates(body.templates)  # checked here (422), used by the batcher's classifier
    # How many labels and templates a request may bring, and their product, the guard has checked
    # before this route ran (`server.limits`, for JSON and multipart alike).
    images = await load_images(resources.settings, uploads["files"], body.paths)
    if not images:
        raise UserError("no image: upload `files` (multipart) or name `paths` (JSON)", 422)
    task = ImageTask(tuple(labels), tuple(body.templates) if body.templates is not None else None)
    rows = await resources.image_batcher.submit(task, [image for _, image in images])
    predictions = [Prediction(i, name, row)
                   for i, ((name, _), row) in enumerate(zip(images, rows, strict=True))]
    return classification_to_dict(labels, predictions, body.top_k)


# --- search ---------------------------------------------------------------------------------------
class SearchRequest(BaseModel):
    """A text query, or an image query (`image_path` in JSON, or an uploaded `image`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    text: str | None = Field(None, min_length=1, max_length=1000)
    image_path: str | None = None
    top_k: int = Field(10, ge=1, le=200, validation_alias=AliasChoices("top_k", "k"),
                       description="How many hits (`k` is accepted as a deprecated alias).")
    min_score: float | None = Field(None, ge=-1.0, le=1.0)


@router.post("/v1/search", openapi_extra=_both_forms(SearchRequest, "image"))
async def search(request: Request) -> dict[str, Any]:
    """Search the image index (`--db`) by text or by example image."""
    resources = _resources(request)
    body, uploads = await parse_body(request, SearchRequest, ("image",))
    paths = [body.image_path] if body.image_path else []
    images = await load_images(resources.settings, uploads["image"], paths)
    if len(images) > 1:
        raise UserError("give one query image: `image_path` or one uploaded `image`", 422)
    name, image = images[0] if images else (None, None)
    with unprocessable():  # the library's query rules (exactly one of text or image, ...)
        results = await resources.on_index(lambda index: index.query(
            text=body.text, image=image, k=body.top_k, min_score=body.min_score, image_name=name))
    return with_image_urls(results.to_dict(), resources.settings.image_roots)


# --- detection ------------------------------------------------------------------------------------
class DetectRequest(BaseModel):
    """What to find (`queries` as text and/or example images) in one image (`path` or uploaded `image`)."""

    model_config = ConfigDict(extra="forbid")

    queries: list[str] = Field(default_factory=list, description="Things to find, in words.")
    example_paths: list[str] = Field(default_factory=list, description="Example images of the thing to find.")
    path: str | None = None
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Keep regions scoring at least this.")

    @model_validator(mode="after")
    def _something_to_find(self) -> DetectRequest:
        if any(not query.strip() for query in self.queries):
            raise ValueError("queries must not be empty strings")
        return self


@router.post("/v1/detect", openapi_extra=_both_forms(DetectRequest, "image"))
async def detect(request: Request) -> dict[str, Any]:
    """Zero-shot (text-queried) or one-shot (image-queried) object detection in one image."""
    resources = _resources(request)
    body, uploads = await parse_body(request, DetectRequest, ("image", "examples"))
    if not body.queries and not body.example_paths and not uploads["examples"]:
        raise UserError("nothing to find: give `queries` (text) or example images", 422)
    targets = await load_images(resources.settings, uploads["image"], [body.path] if body.path else [])
    if len(targets) != 1:
        raise UserError("give exactly one image: `path` (JSON) or one uploaded `image`", 422)
    examples = await load_images(resources.settings, uploads["examples"], body.example_paths)
    name, image = targets[0]

    def run(model):
        return resources.detector(model, tuple(body.queries), examples, body.threshold).run(image)

    return (await resources.on_clip(run)).to_dict(name)


# --- image files, for the web page's result grid -----------------------------------------------------
@router.get("/v1/image", response_class=FileResponse, responses={200: {"content": {"image/*": {}}}})
async def image_file(path: str, request: Request) -> FileResponse:
    """An image file under one of the image roots (403 for anything else)."""
    from zeroshot.vision.images import IMAGE_SUFFIXES

    real = resolve_under_roots(path, request.app.state.settings.image_roots)
    if real.suffix.lower() not in IMAGE_SUFFIXES:
        raise UserError(f"{path}: not an image file", 403)
    return FileResponse(real, headers={"Cache-Control": "private, max-age=3600",
                                       "X-Content-Type-Options": "nosniff"})

