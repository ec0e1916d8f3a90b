"""The server's defences, checked without loading any model: image-root confinement, API key, body
limit, error shapes. (The real-server tests in test_server.py repeat the important ones over HTTP.)"""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest

from zeroshot.errors import UserError
from zeroshot.server.app import create_app
from zeroshot.server.security import resolve_under_roots
from zeroshot.server.settings import ServerSettings


@pytest.fixture
def roots(tmp_path):
    inside = tmp_path / "images"
    (inside / "sub").mkdir(parents=True)
    (inside / "sub" / "a.png").write_bytes(b"png")
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"secret")
    os.symlink(outside / "secret.png", inside / "escape.png")
    os.symlink(outside, inside / "escape-dir")
    os.symlink(inside / "sub" / "a.png", inside / "alias.png")
    return inside.resolve(), outside.resolve()


def test_paths_inside_a_root_resolve(roots):
    inside, _ = roots
    assert resolve_under_roots(str(inside / "sub" / "a.png"), [inside]) == inside / "sub" / "a.png"
    assert resolve_under_roots("sub/a.png", [inside]) == inside / "sub" / "a.png"
    assert resolve_under_roots("sub/../sub/a.png", [inside]) == inside / "sub" / "a.png"
    assert resolve_under_roots("alias.png", [inside]) == inside / "sub" / "a.png"  # a link that stays inside


@pytest.mark.parametrize("path", ["../private/secret.png", "sub/../../private/secret.png", "escape.png",
                                  "escape-dir/secret.png", "/etc/passwd", "{outside}/secret.png"])
def test_escapes_are_refused_with_403(roots, path):
    inside, outside = roots
    with pytest.raises(UserError) as info:
        resolve_under_roots(path.format(outside=outside), [inside])
    assert info.value.status_code == 403


def test_missing_files_nul_bytes_and_no_roots(roots):
    inside, _ = roots
    with pytest.raises(UserError) as info:
        resolve_under_roots("sub/nope.png", [inside])
    assert info.value.status_code == 404
    with pytest.raises(UserError) as info:
        resolve_under_roots("sub/a.png\x00.txt", [inside])
    assert info.value.status_code == 400
    with pytest.raises(UserError) as info:
        resolve_under_roots("sub/a.png", [])
    assert info.value.status_code == 403 and "--image-root" in str(info.value)


def test_settings_refuse_nonsense(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        ServerSettings(image_roots=[tmp_path / "missing"])
    with pytest.raises(UserError, match="max-tokens"):
        ServerSettings(max_tokens=0)
    assert ServerSettings().host == "127.0.0.1"  # loopback unless told otherwise
    assert "api_key" not in str(ServerSettings(api_key="s3cret").public())


def call(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def test_api_key_guards_every_v1_route_but_not_health_or_the_page():
    app = create_app(ServerSettings(api_key="s3cret"))
    assert call(app, "GET", "/health").status_code == 200
    assert call(app, "GET", "/").status_code == 200
    for method, path in [("GET", "/v1/info"), ("GET", "/v1/models"), ("POST", "/v1/completions"),
                         ("POST", "/v1/generate"), ("POST", "/v1/classify/text"),
                         ("POST", "/v1/classify/image"),
                         ("POST", "/v1/search"), ("POST", "/v1/detect"), ("GET", "/v1/image?path=x.png")]:
        response = call(app, method, path, json={})
        assert response.status_code == 401, path
        assert response.json()["error"]["type"] == "authentication_error"
    wrong = call(app, "GET", "/v1/info", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = call(app, "GET", "/v1/info", headers={"Authorization": "Bearer s3cret"})
    assert right.status_code == 200 and right.json()["settings"]["auth_required"] is True


def test_oversize_bodies_are_refused_before_parsing():
    app = create_app(ServerSettings(max_upload_mb=0.01))  # 10 KiB
    big = {"texts": ["x" * 20_000], "labels": ["a", "b"]}
    response = call(app, "POST", "/v1/classify/text", json=big)
    assert response.status_code == 413 and "limit" in response.json()["error"]["message"]

    async def chunks():  # no Content-Length: the middleware has to count
        for _ in range(20):
            yield b"x" * 1024

    response = call(app, "POST", "/v1/classify/text", content=chunks(),
                    headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_malformed_requests_get_clear_4xx_without_touching_a_model():
    app = create_app(ServerSettings())
    bad_json = call(app, "POST", "/v1/classify/text", content=b"{not json",
                    headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]["message"]
    wrong_type = call(app, "POST", "/v1/classify/text", json={"texts": "one string", "labels": ["a", "b"]})
    assert wrong_type.status_code == 422 and wrong_type.json()["error"]["param"] == "texts"
    one_label = call(app, "POST", "/v1/classify/text", json={"texts": ["x"], "labels": ["a"]})
    assert one_label.status_code == 422
    unknown_field = call(app, "POST", "/v1/generate", json={"prompt": "x", "temprature": 1})
    assert unknown_field.status_code == 422 and "temprature" in unknown_field.json()["error"]["message"]
    too_many_tokens = call(app, "POST", "/v1/generate", json={"prompt": "x", "max_new_tokens": 100_000})
    assert too_many_tokens.status_code == 400 and "--max-tokens" in too_many_tokens.json()["error"]["message"]
    too_long = call(app, "POST", "/v1/generate", json={"prompt": "x" * 9000})
    assert too_long.status_code == 413
    form = call(app, "POST", "/v1/classify/image", content=b"abc", headers={"Content-Type": "text/plain"})
    assert form.status_code == 415
    no_db = call(app, "POST", "/v1/search", json={"text": "a cat"})
    assert no_db.status_code == 503 and "--db" in no_db.json()["error"]["message"]
    outside = call(app, "POST", "/v1/classify/image", json={"labels": ["a", "b"], "paths": ["/etc/passwd"]})
    assert outside.status_code == 403


def test_serve_command_refuses_a_missing_image_root(tmp_path, capsys):
    from zeroshot.cli import main

    assert main(["serve", "--image-root", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
