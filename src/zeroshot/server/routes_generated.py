"""`POST /v1/detect-generated`: was each text written by a language model? (`zeroshot.audit.generated`)

The served LM (`--model`) is the observer; Binoculars also needs `--performer`, a second LM of the same
tokenizer. The answer is the shape `zeroshot detect-generated --format json` prints.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from zeroshot.errors import UserError
from zeroshot.server.resources import Unavailable, unprocessable

router = APIRouter(tags=["audit"])


class DetectGeneratedRequest(BaseModel):
    """Texts to judge, an optional context they continue, and the detector."""

    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(description="Texts to judge (each at least `min_tokens` tokens).")
    context: str | None = Field(None, description="Text every text continues (read, not judged).")
    detector: str | None = Field(None, description="binoculars (needs the server's --performer), "
                                                   "log-likelihood, log-rank or entropy; default: "
                                                   "binoculars where it can run, else log-rank.")
    threshold: float | None = Field(None, description="Lowest score flagged as machine-written (default: "
                                                      "the shipped calibration's, if the models match).")
    min_tokens: int = Field(32, description="Shortest text judged, in tokens.")


@router.post("/v1/detect-generated")
async def detect_generated(request: Request, body: DetectGeneratedRequest) -> dict[str, Any]:
    """A score (higher: more machine-like), P(machine) and a decision per text."""
    from zeroshot.audit.generated import DetectConfig, check_texts, score_texts
    from zeroshot.models.catalogue import default_entry

    settings = request.app.state.settings
    resources = request.app.state.resources
    if len(body.texts) > settings.max_texts_per_request:
        raise UserError(f"{len(body.texts)} texts is over this server's limit of "
                        f"{settings.max_texts_per_request}")
    detector = body.detector or ("binoculars" if settings.performer else "log-rank")
    if detector == "binoculars" and settings.performer is None:
        raise Unavailable("the binoculars detector needs a second model: start the server with --performer "
                          "(a model of --model's tokenizer), or ask for log-rank, log-likelihood or entropy")
    with unprocessable():
        # The served LM is the observer; by its name the shipped calibration is found (or not).
        observer = settings.model or default_entry().name
        config = DetectConfig(detector, observer, settings.performer if detector == "binoculars" else None,
                              settings.backend, body.min_tokens, threshold=body.threshold)
        config.check()
        check_texts(body.texts)

    def work(lm):
        performer = resources.performer() if detector == "binoculars" else None
        with unprocessable():
            return score_texts(body.texts, lm, performer, config, body.context)

    result = await resources.on_lm(work)
    return result.to_dict()
