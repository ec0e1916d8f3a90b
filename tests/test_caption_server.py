"""POST /v1/caption: the server's captioner answers texts and images; bad requests get a 4xx, one line."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from zeroshot.caption.captioner import CaptionerConfig, PrefixCaptioner, load_caption_lm
from zeroshot.caption.data import load_caption_encoder
from zeroshot.server.app import create_app
from zeroshot.server.background import serve_in_thread
from zeroshot.server.settings import ServerSettings
from zeroshot.testing import save_random_lm


def _captioner(tmp_path_factory, tiny_clip_dir, kind: str):
    folder = tmp_path_factory.mktemp(f"captioner-{kind}")
    lm = load_caption_lm(str(save_random_lm(folder / "lm")))
    encoder = load_caption_encoder(kind, str(tiny_clip_dir))
    captioner = PrefixCaptioner(
        CaptionerConfig(encoder.embedding_dim, prefix_length=2), lm, encoder=encoder.describe()
    )
    captioner.fit(
        np.random.default_rng(0).normal(size=(4, encoder.embedding_dim)),
        ["a", "b", "c", "d"],
        epochs=1,
        batch_size=2,
    )
    return captioner.save(folder / "captioner")


@pytest.fixture(scope="module")
def servers(tmp_path_factory, tiny_clip_dir):
    urls = {}
    with (
        serve_in_thread(
            create_app(
                ServerSettings(
                    captioner=_captioner(tmp_path_factory, tiny_clip_dir, "clip-text"), device="cpu"
                )
            )
        ) as text,
        serve_in_thread(
            create_app(
                ServerSettings(
                    captioner=_captioner(tmp_path_factory, tiny_clip_dir, "clip-image"), device="cpu"
                )
            )
        ) as image,
        serve_in_thread(create_app(ServerSettings())) as off,
    ):
        urls.update(text=text, image=image, off=off)
        yield urls


def test_texts_are_captioned_in_order(servers):
    response = httpx.post(
        f"{servers['text']}/v1/caption", json={"input": ["a cat", "a dog"], "max_tokens": 5}, timeout=60
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [row["input"] for row in data] == ["a cat", "a dog"]
    assert all(isinstance(row["caption"], str) for row in data)


def test_image_upload_is_captioned(servers):
    buffer = io.BytesIO()
    Image.new("RGB", (50, 40), (200, 10, 10)).save(buffer, format="PNG")
    response = httpx.post(
        f"{servers['image']}/v1/caption",
        files={"files": ("red.png", buffer.getvalue())},
        data={"max_tokens": "4", "num_beams": "2"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"][0]["input"] == "red.png"


@pytest.mark.parametrize(
    ("server", "body", "status", "words"),
    [
        ("text", {"input": []}, 422, "non-empty"),
        ("text", {"input": ["x"], "max_tokens": 0}, 422, "max_tokens"),
        ("text", {"input": ["x"], "bogus": 1}, 422, "bogus"),
        ("image", {"input": ["a text"]}, 422, "captions images"),
        ("off", {"input": ["x"]}, 503, "--captioner"),
    ],
)
def test_bad_requests_get_a_4xx_or_503_with_one_line(servers, server, body, status, words):
    response = httpx.post(f"{servers[server]}/v1/caption", json=body, timeout=60)
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert words in message and "\n" not in message


def test_an_encoder_of_another_width_is_refused():
    from types import SimpleNamespace

    from zeroshot.caption.data import CaptionEncoder, check_encoder
    from zeroshot.errors import UserError

    wide = CaptionEncoder("clip-text", "wide-clip", SimpleNamespace(embedding_dim=512, fingerprint="x"))
    record = {"encoder": {"kind": "clip-text", "name": "tiny", "embedding_dim": 16, "fingerprint": "y"}}
    with pytest.raises(UserError, match="512-dimensional embeddings but the captioner was trained on 16"):
        check_encoder(wide, record)
