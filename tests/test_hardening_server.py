"""Issue 20, server: each bad input the issue found answering 500 is a 4xx, any 500 left closes its
connection cleanly, a keyless server serves only its own host and origin, and each request's work is
capped. No model is loaded: every refusal here happens before one would be needed.
"""

from __future__ import annotations

import asyncio
import io
import json

import httpx
import pytest
from PIL import Image

from zeroshot.server.app import create_app
from zeroshot.server.background import serve_in_thread
from zeroshot.server.settings import ServerSettings

SURROGATE = '"\\ud800"'  # JSON text for a lone surrogate: valid JSON, not valid Unicode


def call(app, method: str, path: str, base_url: str = "http://127.0.0.1", **kwargs) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def raw_json(app, path: str, text: str) -> httpx.Response:
    return call(app, "POST", path, content=text.encode("utf-8"), headers={"Content-Type": "application/json"})


def assert_error_shape(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"} and error["code"] == status
    return error


@pytest.fixture
def roots(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (8, 8), "red").save(root / "red.png")
    (root / "notes.png").write_text("not an image")
    return root


@pytest.fixture
def app(roots):
    return create_app(ServerSettings(image_roots=[roots]))


@pytest.mark.parametrize("path, body", [
    ("/v1/generate", '{"prompt": @S}'),
    ("/v1/generate", '{"prompt": "hi", "stop": [@S]}'),
    ("/v1/completions", '{"model": "m", "prompt": @S}'),
    ("/v1/classify/text", '{"texts": ["a"], "labels": [@S, "b"]}'),
    ("/v1/classify/image", '{"labels": [@S, "b"], "paths": ["red.png"]}'),
    ("/v1/search", '{"text": @S}'),
    ("/v1/search", '{"image_path": @S}'),
    ("/v1/detect", '{"queries": ["a"], "path": @S}'),
    ("/v1/classify/image", '{"labels": ["a", "b"], "paths": ["red@s.png"]}'),
])
def test_lone_surrogates_are_400(app, path, body):
    body = body.replace("@S", SURROGATE).replace("@s", SURROGATE[1:-1])
    assert "surrogate" in assert_error_shape(raw_json(app, path, body), 400)["message"]


def test_invalid_utf8_deep_nesting_huge_integers_and_nan_are_400(app):
    for path in ("/v1/classify/image", "/v1/search", "/v1/detect", "/v1/generate"):
        bad_bytes = call(app, "POST", path, content=b'{"text": "\xed\xa0\x80"}',
                         headers={"Content-Type": "application/json"})
        assert_error_shape(bad_bytes, 400)
        deep = raw_json(app, path, "[" * 100_000 + "]" * 100_000)
        assert "nested" in assert_error_shape(deep, 400)["message"]
        huge = raw_json(app, path, '{"k": ' + "9" * 5000 + "}")
        assert "digits" in assert_error_shape(huge, 400)["message"]
        nan = raw_json(app, path, '{"min_score": NaN}')
        assert_error_shape(nan, 400)


def test_over_long_path_components_are_400_not_oserror(app):
    long_name = "a" * 300 + ".png"
    for response in (call(app, "GET", f"/v1/image?path={long_name}"),
                     call(app, "POST", "/v1/classify/image",
                          json={"labels": ["a", "b"], "paths": [long_name]}),
                     call(app, "POST", "/v1/detect", json={"queries": ["a"], "path": long_name})):
        assert "too long" in assert_error_shape(response, 400)["message"]


def test_home_folders_do_not_reveal_which_users_exist(app):
    real = call(app, "GET", "/v1/image?path=~root/x.png")
    fake = call(app, "GET", "/v1/image?path=~nosuchuser12345/x.png")
    assert real.status_code == fake.status_code == 404


def test_decode_errors_name_the_client_path_not_the_server_folder(app, roots):
    response = call(app, "POST", "/v1/classify/image", json={"labels": ["a", "b"], "paths": ["notes.png"]})
    error = assert_error_shape(response, 422)
    assert "notes.png" in error["message"] and str(roots) not in error["message"]


def test_keyless_server_refuses_foreign_hosts_and_cross_site_origins(app):
    assert_error_shape(call(app, "GET", "/v1/info", base_url="http://evil.example"), 403)
    assert_error_shape(call(app, "GET", "/v1/info", headers={"Origin": "http://evil.example"}), 403)
    upload = call(app, "POST", "/v1/classify/image", headers={"Origin": "http://evil.example"},
                  files={"files": ("a.png", b"x")}, data={"labels": "a,b"})
    assert_error_shape(upload, 403)
    assert call(app, "GET", "/v1/info").status_code == 200
    assert call(app, "GET", "/v1/info", base_url="http://localhost:8000",
                headers={"Origin": "http://localhost:8000"}).status_code == 200  # the server's own page


def test_allowed_origins_and_api_key_open_the_server_as_configured():
    allowed = create_app(ServerSettings(allowed_origins=["http://localhost:3000"]))
    assert call(allowed, "GET", "/v1/info", headers={"Origin": "http://localhost:3000"}).status_code == 200
    assert call(allowed, "GET", "/v1/info", headers={"Origin": "http://other:3000"}).status_code == 403
    keyed = create_app(ServerSettings(api_key="k"))
    response = call(keyed, "GET", "/v1/info", base_url="http://box.lan",
                    headers={"Authorization": "Bearer k"})
    assert response.status_code == 200  # with a key, a foreign page cannot use it anyway


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_per_request_work_caps():
    app = create_app(ServerSettings(max_pixels=1_000_000, max_request_pixels=1_500_000))
    labels = [f"label {i}" for i in range(5000)]
    many_labels = call(app, "POST", "/v1/classify/image", json={"labels": labels, "paths": []})
    assert "labels" in assert_error_shape(many_labels, 413)["message"]
    prompts = call(app, "POST", "/v1/classify/image",
                   json={"labels": labels[:200], "templates": ["a {}"] * 80, "paths": []})
    assert "prompts" in assert_error_shape(prompts, 413)["message"]
    text_labels = call(app, "POST", "/v1/classify/text", json={"texts": ["x"], "labels": labels})
    assert_error_shape(text_labels, 413)
    completions = call(app, "POST", "/v1/completions", json={"model": "m", "prompt": ["hi"] * 65})
    assert "prompts" in assert_error_shape(completions, 413)["message"]
    pixels = call(app, "POST", "/v1/classify/image", data={"labels": "a,b"},
                  files=[("files", ("a.png", _png(1000, 1000))), ("files", ("b.png", _png(1000, 1000)))])
    assert "add up" in assert_error_shape(pixels, 413)["message"]


def test_a_remaining_500_closes_its_connection_and_the_next_request_succeeds():
    app = create_app(ServerSettings())

    @app.get("/boom")
    async def boom():
        raise RuntimeError("a bug")

    with serve_in_thread(app) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        for _ in range(3):
            failed = client.get("/boom")
            assert failed.status_code == 500 and failed.headers["connection"] == "close"
            assert failed.json()["error"]["type"] == "server_error"
            assert client.get("/health").status_code == 200
        # bad input on a kept-alive connection: answered, and the connection stays usable
        for _ in range(3):
            bad = client.post("/v1/generate", content=b'{"prompt": "\\ud800"}',
                              headers={"Content-Type": "application/json"})
            assert bad.status_code == 400 and bad.headers.get("connection") != "close"
            assert client.get("/health").status_code == 200


def test_json_checks_leave_good_bodies_untouched(app):
    body = {"labels": ["a", "b"], "paths": ["red.png"], "nested": {"deep": [[[1]]]}}
    response = call(app, "POST", "/v1/classify/image", json=body)
    assert_error_shape(response, 422)  # reached the route: `nested` is an unknown field
    assert "nested" in json.dumps(response.json())
