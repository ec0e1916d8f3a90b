"""Issue 33, server input side: one guard that every body passes through (any JSON content type,
duplicate headers, JSON lists inside multipart fields), caps on every list with a per-route work
estimate, `serve` refusing at start-up what it would fail on later, and the keyless-exposure fixes.

Every test here failed on the tree before issue 33 (see docs/notes/issue-33-guard.md). No model is
loaded except the tiny random CLIP where a route must run to the end.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
from pathlib import Path

import httpx
import pytest
from PIL import Image

from zeroshot.errors import UserError
from zeroshot.server.app import create_app
from zeroshot.server.settings import ServerSettings

SURROGATE = b'"\\ud800"'  # JSON text for a lone surrogate: valid JSON, not valid Unicode
HUGE_INT = b"9" * 5000


def call(app, method: str, path: str, base_url: str = "http://127.0.0.1", **kwargs) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"} and error["code"] == status
    assert "\n" not in error["message"]
    return error["message"]


def png(size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), "red").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def app():
    return create_app(ServerSettings())


# --- 1. one guard for every body ------------------------------------------------------------------
JSON_ROUTES = [("/v1/embeddings", b'{"input": [@]}'), ("/v1/generate", b'{"prompt": @}'),
               ("/v1/classify/text", b'{"texts": ["a"], "labels": [@, "b"]}'),
               ("/v1/chat/completions", b'{"model": "m", "messages": [{"role": "user", "content": @}]}'),
               ("/v1/completions", b'{"model": "m", "prompt": @}'),
               ("/v1/detect", b'{"queries": [@], "path": "x.png"}')]


@pytest.mark.parametrize("content_type", ["application/merge-patch+json", "application/vnd.api+json",
                                          "Application/JSON; charset=utf-8"])
@pytest.mark.parametrize("path, body", JSON_ROUTES)
def test_every_json_content_type_goes_through_the_guard(app, path, body, content_type):
    response = call(app, "POST", path, content=body.replace(b"@", SURROGATE),
                    headers={"Content-Type": content_type})
    assert "surrogate" in error_of(response, 400)


@pytest.mark.parametrize("path, body", JSON_ROUTES)
def test_two_content_type_headers_are_refused(app, path, body):
    for pair in (("application/json", "text/plain"), ("text/plain", "application/json"),
                 ("application/json", "application/json")):
        response = call(app, "POST", path, content=body.replace(b"@", b'"ok"'),
                        headers=[("Content-Type", pair[0]), ("Content-Type", pair[1])])
        assert "more than one Content-Type" in error_of(response, 400)


def test_two_host_or_origin_headers_are_refused(app):
    for name in ("Host", "Origin"):
        response = call(app, "GET", "/v1/info", headers=[(name, "127.0.0.1"), (name, "evil.example")])
        assert f"more than one {name}" in error_of(response, 400)


@pytest.mark.parametrize("path, field, files", [
    ("/v1/classify/image", "labels", "files"), ("/v1/classify/image", "templates", "files"),
    ("/v1/detect", "queries", "image"), ("/v1/caption", "input", "files")])
@pytest.mark.parametrize("bad, words", [(b"[@, 1]", "surrogate"), (b'["a", 1, @]', "surrogate"),
                                        (b'["a", ' + HUGE_INT + b"]", "digits"),
                                        (b"[" * 100 + b"]" * 100, "nested"), (b"[1e999]", "float")])
def test_json_lists_inside_multipart_fields_go_through_the_guard(app, path, field, files, bad, words):
    value = bad.replace(b"@", SURROGATE).decode()
    response = call(app, "POST", path, data={field: value}, files={files: ("a.png", png())})
    assert words in error_of(response, 400)


def test_other_content_types_and_compressed_bodies_are_refused(app):
    for path in ("/v1/embeddings", "/v1/classify/image", "/v1/generate"):
        plain = call(app, "POST", path, content=b'{"input": "x"}', headers={"Content-Type": "text/plain"})
        assert "content type" in error_of(plain, 415)
        gzip = call(app, "POST", path, content=b'{"input": "x"}',
                    headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert "Content-Encoding" in error_of(gzip, 415)


def test_a_plus_json_body_reaches_the_vision_routes_as_json(app):
    # Before: FastAPI's routes read application/*+json, the vision routes refused it (415): now one rule.
    response = call(app, "POST", "/v1/classify/image", content=b'{"labels": ["a", "b"], "paths": []}',
                    headers={"Content-Type": "application/merge-patch+json"})
    assert "no image" in error_of(response, 422)


# --- 2. caps on every list, and a work estimate per route ---------------------------------------------
def test_detect_queries_are_capped_before_any_work(app):
    queries = [f"thing {i}" for i in range(5000)]
    for response in (call(app, "POST", "/v1/detect", json={"queries": queries, "path": "x.png"}),
                     call(app, "POST", "/v1/detect", data={"queries": json.dumps(queries)},
                          files={"image": ("a.png", png())}),
                     call(app, "POST", "/v1/detect", data={"queries": ",".join(queries)},
                          files={"image": ("a.png", png())})):
        message = error_of(response, 413)
        assert "5,000 queries" in message and "max_queries_per_request" in message


def test_detect_work_estimate_counts_templates_and_background_prompts():
    app = create_app(ServerSettings(max_label_prompts=1_000))
    message = error_of(call(app, "POST", "/v1/detect", json={"queries": ["a"] * 20, "path": "x.png"}), 413)
    assert "background" in message and "max_label_prompts" in message


@pytest.mark.parametrize("path, body, setting", [
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}] * 300},
     "max_messages_per_request"),
    ("/v1/classify/text", {"texts": ["x"], "labels": ["a", "b"],
                           "demonstrations": [{"text": "y", "label": "a"}] * 100},
     "max_demonstrations_per_request"),
    ("/v1/generate", {"prompt": "hi", "stop": ["x"] * 50}, "max_stop_sequences"),
    ("/v1/caption", {"input": ["x"] * 100}, "max_texts_per_request"),
    ("/v1/classify/image", {"labels": ["a", "b"], "paths": ["x.png"] * 40}, "max_images_per_request"),
    ("/v1/embeddings", {"input": "x", "images": ["x.png"] * 40}, "max_images_per_request"),
    ("/v1/classify/text", {"texts": ["x"] * 64, "labels": [f"l{i}" for i in range(100)]},
     "max_text_label_pairs"),
    ("/v1/detokenize", {"tokens": [1] * 150_000}, "max_list_items"),
])
def test_every_list_is_capped_with_413_naming_the_limit(app, path, body, setting):
    assert setting in error_of(call(app, "POST", path, json=body), 413)


def test_caps_count_multipart_fields_as_the_routes_read_them():
    app = create_app(ServerSettings(max_labels_per_request=3))
    for data in ({"labels": "a,b,c,d"}, {"labels": ["a", "b", "c", "d"]}, {"labels": '["a", "b", "c", "d"]'}):
        response = call(app, "POST", "/v1/classify/image", data=data, files={"files": ("a.png", png())})
        assert "max_labels_per_request" in error_of(response, 413)


def test_token_ids_count_as_one_prompt_not_many(app):
    # A flat list of ids is one prompt: 100 ids must not trip the 16-prompt cap (it reaches the route).
    response = call(app, "POST", "/v1/completions", json={"model": "m", "prompt": list(range(100))})
    assert response.status_code != 413


def test_the_server_writes_no_cache_file_per_detect_query_set(tiny_clip, tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROSHOT_CACHE", str(tmp_path / "cache"))
    app = create_app(ServerSettings(batch_window_ms=0))
    app.state.resources._clip = tiny_clip
    for queries in (["a red ball"], ["a blue car", "a tree"]):
        response = call(app, "POST", "/v1/detect", data={"queries": json.dumps(queries)},
                        files={"image": ("a.png", png(64))})
        assert response.status_code == 200, response.text
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


# --- 3. serve refuses at start-up, in one line, with exit 2 -----------------------------------------
@pytest.fixture
def no_uvicorn(monkeypatch):
    """Record instead of serving, so a check that is missing fails fast instead of serving forever."""
    import uvicorn

    started: list[str] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: started.append("run"))
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, *a, **k: started.append("Server.run"))
    return started


def serve_exit(capsys, *args: str) -> tuple[int, str]:
    from zeroshot.cli import main

    code = main(["serve", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("make_args", [
    lambda tmp: ["--db", str(_file(tmp))],
    lambda tmp: ["--db", str(tmp / "no-such-index")],
    lambda tmp: ["--db", str(_folder(tmp))],  # a folder that holds no index
    lambda tmp: ["--backend", "bogus"],
    lambda tmp: ["--captioner", str(tmp / "no-such-captioner")],
    lambda tmp: ["--captioner", str(_folder(tmp))],  # a folder that holds no captioner
    lambda tmp: ["--host", "999.1.1.1", "--port", "8123"],
    lambda tmp: ["--host", "203.0.113.77", "--port", "8123"],  # a valid address, not this machine's
])
def test_serve_refuses_at_start_up_with_one_line_and_exit_2(no_uvicorn, capsys, tmp_path, make_args):
    code, err = serve_exit(capsys, *make_args(tmp_path))
    assert code == 2 and no_uvicorn == [], err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err


def test_serve_refuses_a_busy_port(no_uvicorn, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = serve_exit(capsys, "--port", str(port))
    assert code == 2 and no_uvicorn == [] and "already in use" in err and len(err.strip().splitlines()) == 1


def _file(tmp: Path) -> Path:
    path = tmp / "a-file"
    path.write_text("x")
    return path


def _folder(tmp: Path) -> Path:
    path = tmp / "empty-folder"
    path.mkdir(exist_ok=True)
    return path


def test_settings_check_the_served_files_once():
    with pytest.raises(UserError, match="backend"):
        ServerSettings(backend="bogus")
    with pytest.raises(UserError, match="--captioner"):
        ServerSettings(captioner=Path("/no/such/captioner"))


# --- 4. keyless exposure ------------------------------------------------------------------------------
def test_a_keyless_server_on_every_address_still_checks_the_host():
    app = create_app(ServerSettings(host="0.0.0.0"))
    assert "not this server" in error_of(call(app, "GET", "/v1/info", base_url="http://evil.example"), 403)
    rebound = call(app, "GET", "/v1/info", base_url="http://rebind.evil:8000")
    assert "not this server" in error_of(rebound, 403)
    assert call(app, "GET", "/v1/info", base_url="http://localhost:8000").status_code == 200
    own = socket.gethostname()
    assert call(app, "GET", "/v1/info", base_url=f"http://{own}:8000").status_code == 200
    named = create_app(ServerSettings(host="0.0.0.0", allowed_hosts=["box.lan"]))
    assert call(named, "GET", "/v1/info", base_url="http://box.lan:8000").status_code == 200
    assert call(named, "GET", "/v1/info", base_url="http://other.lan:8000").status_code == 403


def test_a_keyless_server_answers_cross_site_image_probes_uniformly(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (4, 4)).save(root / "there.png")
    app = create_app(ServerSettings(image_roots=[root]))
    probes = [call(app, "GET", f"/v1/image?path={name}", headers={"Sec-Fetch-Site": site})
              for name in ("there.png", "missing.png") for site in ("cross-site", "same-site")]
    assert {response.status_code for response in probes} == {403}
    assert len({response.text for response in probes}) == 1  # nothing tells the two files apart
    own_page = call(app, "GET", "/v1/image?path=there.png", headers={"Sec-Fetch-Site": "same-origin"})
    assert own_page.status_code == 200
    assert call(app, "GET", "/v1/image?path=there.png").status_code == 200  # curl, scripts: no header


def test_info_shows_names_not_server_paths(tmp_path, tiny_clip):
    from zeroshot.search.index import ImageIndex

    root = tmp_path / "secret-root" / "images"
    root.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "a.png")
    db = tmp_path / "secret-root" / "index"
    with ImageIndex(db, tiny_clip) as index:
        index.add([root])
    app = create_app(ServerSettings(image_roots=[root], db=db, clip_model=str(tmp_path / "secret-root")))
    text = call(app, "GET", "/v1/info").text
    assert str(tmp_path) not in text and "secret-root" in text  # the folder's name, not where it lives


def test_embeddings_404_does_not_show_the_clip_models_path(tmp_path):
    clip = tmp_path / "private" / "my-clip"
    clip.mkdir(parents=True)
    app = create_app(ServerSettings(clip_model=str(clip)))
    message = error_of(call(app, "POST", "/v1/embeddings", json={"input": "x", "model": "nope"}), 404)
    assert str(clip) not in message and "my-clip" in message
