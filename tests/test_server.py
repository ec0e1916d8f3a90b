"""The real server: uvicorn on a free loopback port, the real default LM (SmolLM2 via `load_lm`), the
tiny random CLIP, a small image index; driven over HTTP with httpx, the official `openai` client and
headless Chromium. One server for the whole module: models load once, as in production."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from zeroshot.server.app import create_app
from zeroshot.server.background import serve_in_thread
from zeroshot.server.settings import ServerSettings

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
# Screenshots go to docs/ only when asked (ZEROSHOT_UPDATE_SCREENSHOTS=1), so test runs leave git clean.
DOC_SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.slow


def _picture(colour: tuple[int, int, int], shape: str, size: int = 96) -> Image.Image:
    image = Image.new("RGB", (size, size), (240, 240, 240))
    draw = ImageDraw.Draw(image)
    box = (size // 5, size // 5, size * 4 // 5, size * 4 // 5)
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=colour)
    return image


@pytest.fixture(scope="module")
def sample_images(tmp_path_factory) -> Path:
    """Six small pictures in an image root, plus a private file and a symlink that escapes the root."""
    base = tmp_path_factory.mktemp("server")
    root = base / "images"
    root.mkdir()
    colours = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (30, 60, 220)}
    for name, colour in colours.items():
        for shape in ("circle", "square"):
            _picture(colour, shape).save(root / f"{name}-{shape}.png")
    private = base / "private"
    private.mkdir()
    _picture((0, 0, 0), "square").save(private / "secret.png")
    os.symlink(private / "secret.png", root / "escape.png")
    return root


@pytest.fixture(scope="module")
def image_db(sample_images, tiny_clip, tmp_path_factory) -> Path | None:
    """An image index of the sample pictures, or None where image search is not installed."""
    search = pytest.importorskip("zeroshot.search.index", reason="image search (zeroshot.search.index) "
                                                                  "is not installed")
    db = tmp_path_factory.mktemp("db") / "index"
    with search.ImageIndex(db, tiny_clip) as index:
        index.add(sorted(p for p in sample_images.glob("*.png") if not p.is_symlink()))
    return db


@pytest.fixture(scope="module")
def server(sample_images, image_db, tiny_clip_dir):
    settings = ServerSettings(clip_model=str(tiny_clip_dir), device="cpu", db=image_db,
                              image_roots=[sample_images], api_key=KEY, max_upload_mb=1, max_pixels=1_000_000,
                              max_prompt_chars=2_000, max_tokens=64, batch_window_ms=50)
    app = create_app(settings)
    with serve_in_thread(app) as base_url:
        yield base_url, app


def test_without_clip_model_the_server_uses_the_index_model(image_db, tiny_clip):
    """`serve --db` without `--clip-model` loads the model the index was built with, as `zeroshot search`
    does (`zeroshot.search.index.index_model`), rather than the default CLIP the index would refuse."""
    from zeroshot.server.resources import Resources

    resources = Resources(ServerSettings(device="cpu", db=image_db))
    try:
        assert resources.clip().fingerprint == tiny_clip.fingerprint
        assert len(resources.index()) == 6
    finally:
        asyncio.run(resources.close())


@pytest.fixture(scope="module")
def client(server):
    base_url, _ = server
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=120) as http:
        yield http


@pytest.fixture(scope="module")
def lm_ready(client) -> None:
    """Skip, with the server's own reason, where the default LM cannot load on this machine."""
    response = client.get("/v1/models")
    if response.status_code == 503:
        pytest.skip(response.json()["error"]["message"])
    assert response.status_code == 200, response.text


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _events(response: httpx.Response) -> list[tuple[str, str]]:
    """(event, data) pairs of a server-sent-event body."""
    events = []
    for block in response.text.strip().split("\n\n"):
        kind, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        events.append((kind, "\n".join(data)))
    return events


# --- service ---------------------------------------------------------------------------------------
def test_binds_loopback_and_reports_health_without_a_key(server):
    base_url, _ = server
    assert base_url.startswith("http://127.0.0.1:")
    response = httpx.get(f"{base_url}/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"
    assert httpx.get(f"{base_url}/v1/info").status_code == 401


def test_openapi_describes_every_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/generate", "/v1/completions", "/v1/models", "/v1/classify/text", "/v1/classify/image",
                 "/v1/search", "/v1/detect", "/v1/info", "/health"):
        assert path in paths, path
    assert "multipart/form-data" in paths["/v1/classify/image"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


# --- generation ------------------------------------------------------------------------------------
def test_generate_streams_the_same_text_it_returns_whole(client, lm_ready):
    request = {"prompt": "The three primary colours are", "max_new_tokens": 12, "temperature": 0}
    whole = client.post("/v1/generate", json=request)
    assert whole.status_code == 200, whole.text
    body = whole.json()
    assert body["text"] and body["usage"]["completion_tokens"] > 0 and body["backend"] in ("llama.cpp",
                                                                                          "transformers")
    streamed = client.post("/v1/generate", json={**request, "stream": True})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = _events(streamed)
    pieces = [json.loads(data)["text"] for kind, data in events if kind == "message"]
    assert len(pieces) > 1  # it really streamed, piece by piece
    assert "".join(pieces) == body["text"]
    assert events[-1][0] == "done" and json.loads(events[-1][1])["finish_reason"] in ("stop", "length")


def test_generate_options_and_limits(client, lm_ready):
    sampled = [client.post("/v1/generate", json={"prompt": "Once upon a time", "max_new_tokens": 8,
                                                 "temperature": 0.9, "top_k": 40, "top_p": 0.9, "seed": 7,
                                                 "repetition_penalty": 1.1}).json()["text"] for _ in range(2)]
    assert sampled[0] == sampled[1]  # same seed, same text
    stopped = client.post("/v1/generate", json={"prompt": "1, 2, 3, 4,", "max_new_tokens": 20, "stop": [","]})
    assert stopped.status_code == 200 and "," not in stopped.json()["text"]
    over = client.post("/v1/generate", json={"prompt": "x", "max_new_tokens": 65})
    assert over.status_code == 400 and "--max-tokens" in over.json()["error"]["message"]
    long = client.post("/v1/generate", json={"prompt": "word " * 500, "stream": True})
    assert long.status_code == 413  # refused before the stream starts, as plain JSON
    assert client.post("/v1/generate", json={"prompt": "x", "temperature": "hot"}).status_code == 422


def test_openai_client_works_unchanged(server, lm_ready):
    openai = pytest.importorskip("openai")
    base_url, _ = server
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0)
    model = client.models.list().data[0].id
    prompt = "The capital of France is"
    completion = client.completions.create(model=model, prompt=prompt, max_tokens=10, temperature=0)
    text = completion.choices[0].text
    assert text and completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens > 0 and completion.model == model
    ours = httpx.post(f"{base_url}/v1/generate", headers=AUTH, timeout=60,
                      json={"prompt": prompt, "max_new_tokens": 10, "temperature": 0}).json()["text"]
    assert text == ours  # one library underneath: same answer through either API

    chunks = list(client.completions.create(model=model, prompt=prompt, max_tokens=10, temperature=0,
                                            stream=True))
    assert len(chunks) > 2 and "".join(chunk.choices[0].text for chunk in chunks) == text
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")

    batch = client.completions.create(model=model, prompt=[prompt, "Water is made of"], max_tokens=4,
                                      temperature=0)
    assert [choice.index for choice in batch.choices] == [0, 1]

    with pytest.raises(openai.BadRequestError, match="n=1"):
        client.completions.create(model=model, prompt=prompt, n=2)
    with pytest.raises(openai.BadRequestError, match="logprobs"):
        client.completions.create(model=model, prompt=prompt, logprobs=9)  # over the limit of 5
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="gpt-4", prompt=prompt)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{base_url}/v1", api_key="wrong", max_retries=0).models.list()


# --- text classification ---------------------------------------------------------------------------
def test_text_classification_matches_the_library_and_merges_concurrent_requests(server, client, lm_ready):
    base_url, app = server
    labels = ["sport", "politics", "weather"]
    texts = ["The striker scored twice in the final.", "Parliament passed the budget vote.",
             "Heavy rain and wind are expected tomorrow.", "The coach praised the goalkeeper.",
             "The minister resigned after the scandal.", "Sunny skies all weekend.",
             "The tennis match went to five sets.", "Voters head to the polls today."]
    before = client.get("/v1/info").json()["batching"]["text_classification"]

    async def classify_all():
        async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=120) as http:
            return await asyncio.gather(*(http.post("/v1/classify/text",
                                                    json={"texts": [text], "labels": labels})
                                          for text in texts))

    responses = asyncio.run(classify_all())
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    after = client.get("/v1/info").json()["batching"]["text_classification"]
    calls, requests = after["calls"] - before["calls"], after["requests"] - before["requests"]
    assert requests == len(texts) and calls < len(texts)  # requests really were merged
    assert after["largest_call_requests"] > 1

    from zeroshot.text.classify import ZeroShotTextClassifier

    resources = app.state.resources  # the library, on the server's own LM thread: same model, same answers
    expected = resources.lm_executor.submit(
        lambda: ZeroShotTextClassifier(resources.lm(), labels).predict_proba(texts)).result()
    served = np.array([[r.json()["results"][0]["scores"][label] for label in labels] for r in responses])
    np.testing.assert_allclose(served, expected, atol=1e-4)


def test_text_classification_refuses_bad_input(client, lm_ready):
    assert client.post("/v1/classify/text", json={"texts": ["x"], "labels": ["a", "a"]}).status_code == 422
    demo = client.post("/v1/classify/text", json={"texts": ["x"], "labels": ["a", "b"],
                                                  "demonstrations": [{"text": "y", "label": "c"}]})
    assert demo.status_code == 422 and "c" in demo.json()["error"]["message"]
    too_long = client.post("/v1/classify/text", json={"texts": ["x" * 2001], "labels": ["a", "b"]})
    assert too_long.status_code == 413
    odd = client.post("/v1/classify/text",
                      json={"texts": ["x"], "labels": ["a", "b"], "calibrate": "maybe"})
    assert odd.status_code == 422
    assert "calibrate must be one of auto, on, off" in odd.json()["error"]["message"]
    # The old boolean and the mode it means are one task (one classifier, one batch).
    on = [client.post("/v1/classify/text", json={"texts": ["x"], "labels": ["a", "b"], "calibrate": value})
          for value in (True, "on")]
    assert [r.status_code for r in on] == [200, 200] and on[0].json() == on[1].json()


# --- image classification --------------------------------------------------------------------------
def test_image_classification_by_upload_and_by_path_agree_with_the_library(client, sample_images, tiny_clip):
    labels = ["a red circle", "a green square", "a blue shape"]
    path = sample_images / "red-circle.png"
    upload = client.post("/v1/classify/image", data={"labels": labels},
                         files={"files": ("red.png", path.read_bytes(), "image/png")})
    assert upload.status_code == 200, upload.text
    by_path = client.post("/v1/classify/image", json={"labels": labels, "paths": ["red-circle.png"]})
    assert by_path.status_code == 200, by_path.text
    up, named = upload.json()["results"][0], by_path.json()["results"][0]
    assert up["image"] == "red.png" and named["image"] == "red-circle.png"
    assert up["scores"] == pytest.approx(named["scores"], abs=1e-5)
    assert sum(up["scores"].values()) == pytest.approx(1.0, abs=1e-4)

    from zeroshot.vision.classify import ZeroShotImageClassifier

    expected = ZeroShotImageClassifier(tiny_clip, labels).predict_proba([path])[0]
    assert [up["scores"][label] for label in labels] == pytest.approx(expected.tolist(), abs=1e-4)


def test_concurrent_image_requests_share_one_clip_call(server, client, sample_images):
    base_url, _ = server
    before = client.get("/v1/info").json()["batching"]["image_classification"]

    names = sorted(p.name for p in sample_images.glob("*-*.png"))

    async def classify_all():
        async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=120) as http:
            return await asyncio.gather(*(http.post("/v1/classify/image", json={
                "labels": ["red", "green", "blue"], "paths": [name]}) for name in names))

    responses = asyncio.run(classify_all())
    assert all(r.status_code == 200 for r in responses)
    after = client.get("/v1/info").json()["batching"]["image_classification"]
    assert after["requests"] - before["requests"] == 6 and after["calls"] - before["calls"] < 6


def test_image_limits_and_path_confinement(client, sample_images):
    labels = {"labels": ["a", "b"]}
    for path in ["../private/secret.png", "escape.png", str(sample_images.parent / "private" / "secret.png"),
                 "/etc/passwd"]:
        response = client.post("/v1/classify/image", json={**labels, "paths": [path]})
        assert response.status_code == 403, path
        assert client.get("/v1/image", params={"path": path}).status_code == 403
    assert client.get("/v1/image", params={"path": "red-circle.png"}).headers["content-type"] == "image/png"
    huge = _png(Image.new("RGB", (1200, 1000)))  # 1.2 MP > 1 MP allowed, but under 1 MiB as PNG
    too_many = client.post("/v1/classify/image", data=labels, files={"files": ("big.png", huge, "image/png")})
    assert too_many.status_code == 413 and "--max-pixels" in too_many.json()["error"]["message"]
    oversize = client.post("/v1/classify/image", data=labels,
                           files={"files": ("noise.bin", os.urandom(1_200_000), "image/png")})
    assert oversize.status_code == 413
    broken = client.post("/v1/classify/image", data=labels,
                         files={"files": ("broken.png", b"\x89PNG not really", "image/png")})
    assert broken.status_code == 422 and "broken.png" in broken.json()["error"]["message"]
    assert client.post("/v1/classify/image", json=labels).status_code == 422  # no image at all


# --- search and detection --------------------------------------------------------------------------
def test_search_by_text_and_by_image(client, sample_images):
    by_text = client.post("/v1/search", json={"text": "a red circle", "k": 4})
    assert by_text.status_code == 200, by_text.text
    body = by_text.json()
    assert body["index_size"] == 6 and len(body["results"]) == 4
    scores = [hit["score"] for hit in body["results"]]
    assert scores == sorted(scores, reverse=True)
    first = body["results"][0]
    served = client.get("/v1/image", params={"path": first["path"]})  # what the web page shows
    assert served.content == Path(first["path"]).read_bytes()
    query = (sample_images / "blue-square.png").read_bytes()
    by_image = client.post("/v1/search", data={"k": "1"}, files={"image": ("q.png", query, "image/png")})
    assert by_image.status_code == 200, by_image.text
    top = by_image.json()["results"][0]
    assert Path(top["path"]).name == "blue-square.png" and top["score"] == pytest.approx(1.0, abs=1e-3)
    assert client.post("/v1/search", json={"k": 3}).status_code == 422  # no query


def test_detection(client, sample_images):
    pytest.importorskip("zeroshot.detect.detector", reason="detection is not installed")
    response = client.post("/v1/detect", json={"path": "green-square.png", "queries": ["a green square"],
                                               "threshold": 0.0})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"]) == (96, 96)
    for detection in body["detections"]:
        x0, y0, x1, y1 = detection["box"]
        assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 96 and detection["label"] == "a green square"
    assert client.post("/v1/detect", json={"path": "green-square.png"}).status_code == 422


# --- the web page ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    if os.environ.get("ZEROSHOT_UPDATE_SCREENSHOTS") == "1":
        DOC_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return DOC_SCREENSHOTS
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def page(server):
    """The page in headless Debian Chromium, with the API key in its local storage."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (make setup-browser)")
    sync_api = pytest.importorskip("playwright.sync_api")
    base_url, _ = server
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1100, "height": 760})
        tab.add_init_script(f"localStorage.setItem('zeroshot-api-key', '{KEY}')")
        tab.goto(base_url + "/")
        yield tab
        browser.close()


def test_web_page_search_shows_a_grid(page, screenshots):
    page.click("nav button[data-panel='search']")
    page.fill("#search-query", "a red circle")
    page.press("#search-query", "Enter")
    # Locators, not wait_for_function: the page's Content-Security-Policy forbids the eval behind it.
    expect = pytest.importorskip("playwright.sync_api").expect
    expect(page.locator("#search-results figure.result")).to_have_count(6)
    expect(page.locator("#search-status")).to_contain_text("6 of 6 images")
    expect(page.locator("#search-results img[src^='blob:']")).to_have_count(6)
    for image in page.locator("#search-results img").all():
        image.wait_for(state="visible")
        assert image.bounding_box()["width"] > 50
    names = page.locator("#search-results figcaption span:first-child").all_inner_texts()
    expected = [f"{colour}-{shape}.png" for colour in ("red", "green", "blue")
                for shape in ("circle", "square")]
    assert sorted(names) == sorted(expected)
    page.screenshot(path=screenshots / "search.png")


def test_web_page_classify_shows_a_bar_chart(page, screenshots, sample_images):
    page.click("nav button[data-panel='classify']")
    page.fill("#classify-labels", "red, green, blue, a photo of a car")
    page.set_input_files("#classify-file", str(sample_images / "red-circle.png"))
    page.wait_for_selector("#classify-bars .bar")
    assert page.locator("#classify-bars .bar").count() == 4
    styles = [fill.get_attribute("style") for fill in page.locator("#classify-bars .fill").all()]
    widths = [float(style.split("width:")[1].split("%")[0]) for style in styles]
    assert widths == sorted(widths, reverse=True) and sum(widths) == pytest.approx(100, abs=0.5)
    page.screenshot(path=screenshots / "classify.png")


def test_web_page_streams_a_completion(page, screenshots, lm_ready):
    page.click("nav button[data-panel='generate']")
    page.fill("#generate-prompt", "A short poem about the sea:")
    page.fill("#generate-max", "24")
    page.click("#generate-run")
    expect = pytest.importorskip("playwright.sync_api").expect
    expect(page.locator("#generate-status")).to_contain_text("Done", timeout=60_000)
    assert page.locator("#generate-output .completion").inner_text().strip()
    page.screenshot(path=screenshots / "generate.png")
