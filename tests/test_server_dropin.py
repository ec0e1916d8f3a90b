"""Issue 33's drop-in edges: `/v1/models` lists the embedding models, token-id embedding input is a
clear 400 naming LangChain's two settings, and search hits carry the `url` docs/server.md promises."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from zeroshot.server.app import create_app
from zeroshot.server.settings import ServerSettings
from zeroshot.testing import FakeLM


def _client(settings: ServerSettings, clip=None) -> TestClient:
    app = create_app(settings)
    app.state.resources._lm = FakeLM()
    if clip is not None:
        app.state.resources._clip = clip
    return TestClient(app, base_url="http://127.0.0.1")


def test_models_lists_the_lm_and_every_embedding_model(tiny_clip_dir):
    with _client(ServerSettings(clip_model=str(tiny_clip_dir))) as client:
        listed = client.get("/v1/models").json()
        ids = [model["id"] for model in listed["data"]]
        assert ids[0] == "fake-bigram" and "all-MiniLM-L6-v2" in ids and tiny_clip_dir.name in ids
        assert all(set(m) == {"id", "object", "created", "owned_by"} and m["object"] == "model"
                   for m in listed["data"])
        assert all(client.get(f"/v1/models/{name}").status_code == 200 for name in ids)
        assert str(tiny_clip_dir.parent) not in str(listed)  # never the server's folders


def test_token_id_embeddings_are_a_400_naming_both_langchain_settings():
    with _client(ServerSettings()) as client:
        response = client.post("/v1/embeddings", json={"input": [[9906, 1917]], "model": "all-MiniLM-L6-v2"})
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "check_embedding_ctx_length=False" in message and "tiktoken_enabled=False" in message


def test_search_hits_carry_the_url_of_their_image(tmp_path, tiny_clip):
    from zeroshot.search.index import ImageIndex

    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / f"img {i}.png")
    db = tmp_path / "index"
    with ImageIndex(db, tiny_clip) as index:
        index.add([root])
    with _client(ServerSettings(db=db, image_roots=[root], batch_window_ms=0), clip=tiny_clip) as client:
        hits = client.post("/v1/search", json={"text": "noise", "top_k": 3}).json()["results"]
        assert len(hits) == 3 and all(hit["url"].startswith("/v1/image?path=") for hit in hits)
        for hit in hits:
            image = client.get(hit["url"])
            assert image.status_code == 200 and image.content == open(hit["path"], "rb").read()
    with _client(ServerSettings(db=db, batch_window_ms=0), clip=tiny_clip) as client:  # no root: no url
        response = client.post("/v1/search", json={"text": "noise", "top_k": 1})
        if response.status_code == 200:
            assert response.json()["results"][0]["url"] is None
        else:
            pytest.skip(f"search without an image root answers {response.status_code}")
