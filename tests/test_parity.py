"""One library, three doors: each task run from Python, from the CLI (`--format json`) and over HTTP
gives the same JSON document, key for key and number for number.

The CLI and the server only translate: they call the library function and print or return its result's
`to_dict()`. These tests hold them to that.
"""

from __future__ import annotations

import json
import os

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from zeroshot.cli import main
from zeroshot.server.app import create_app
from zeroshot.server.settings import ServerSettings

LABELS = ["sport", "politics", "business"]
TEXTS = ["The striker scored twice in the final minutes.", "Parliament passed the budget bill."]


def _cli_json(capsys, *argv: str) -> dict:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity-images")
    for name, colour in {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (30, 60, 220)}.items():
        image = Image.new("RGB", (96, 96), (250, 250, 250))
        image.paste(colour, (24, 24, 72, 72))
        image.save(root / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def index_db(pictures, tiny_clip, tmp_path_factory):
    from zeroshot.search.index import ImageIndex

    db = tmp_path_factory.mktemp("parity-db") / "index"
    with ImageIndex(db, tiny_clip) as index:
        index.add(sorted(pictures.glob("*.png")))
    return db


@pytest.fixture(scope="module")
def http(pictures, index_db, tiny_clip_dir):
    settings = ServerSettings(clip_model=str(tiny_clip_dir), device="cpu", db=index_db,
                              image_roots=[pictures], batch_window_ms=0)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        yield client


def _post(http, path: str, body: dict) -> dict:
    response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def lm():
    from zeroshot.models.loader import load_lm

    return load_lm()


# --- language -------------------------------------------------------------------------------------
def test_text_classification(lm, http, capsys):
    from zeroshot.text.classify import ZeroShotTextClassifier

    python = ZeroShotTextClassifier(lm, LABELS).classify(TEXTS).to_dict()
    cli = _cli_json(capsys, "classify-text", *TEXTS, "--labels", ",".join(LABELS), "--format", "json")
    server = _post(http, "/v1/classify/text", {"texts": TEXTS, "labels": LABELS})
    assert python == cli == server


def test_few_shot_prediction(lm, http, capsys, tmp_path):
    from zeroshot.text.classify import ZeroShotTextClassifier

    pool = [("The goalkeeper saved a penalty.", "sport"), ("The minister resigned.", "politics"),
            ("Shares fell sharply today.", "business"), ("The league title was decided.", "sport")]
    examples = tmp_path / "examples.jsonl"
    examples.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in pool))
    classifier = ZeroShotTextClassifier(lm, LABELS, n_shots=3, seed=1, calibrate=True)
    classifier.fit([t for t, _ in pool], [y for _, y in pool])
    python = classifier.classify(TEXTS).to_dict()
    cli = _cli_json(capsys, "classify-text", *TEXTS, "--labels", ",".join(LABELS), "--examples",
                    str(examples), "--shots", "3", "--seed", "1", "--calibrate", "--format", "json")
    # The HTTP API takes the demonstrations themselves: the ones the seed drew, in their order.
    drawn = [{"text": d.text, "label": d.answer} for d in classifier.demonstrations_]
    server = _post(http, "/v1/classify/text", {"texts": TEXTS, "labels": LABELS, "demonstrations": drawn,
                                               "calibrate": True})
    assert python["shots"] == 3 and python == cli == server


def test_generation_with_a_fixed_seed(lm, http, capsys):
    from zeroshot.models.lm import GenerationConfig

    prompt, options = "Once upon a time", {"max_tokens": 8, "temperature": 0.8, "top_p": 0.9, "seed": 7}
    python = lm.complete(prompt, GenerationConfig.from_options(**options)).to_dict()
    cli = _cli_json(capsys, "generate", prompt, "--max-tokens", "8", "--temperature", "0.8", "--top-p", "0.9",
                    "--seed", "7", "--format", "json")
    server = _post(http, "/v1/generate", {"prompt": prompt, **options})
    assert python["seed"] == 7 and python == cli == server


# --- vision ---------------------------------------------------------------------------------------
def test_image_classification(tiny_clip, tiny_clip_dir, pictures, http, capsys):
    from zeroshot.vision.classify import ZeroShotImageClassifier, classification_to_dict

    paths = [str(p) for p in sorted(pictures.glob("*.png"))]
    labels, template = ["red", "green", "blue"], "a photo of a {} square."
    classifier = ZeroShotImageClassifier(tiny_clip, labels, [template], cache_dir=False)
    python = classification_to_dict(labels, classifier.iter_predictions(paths), top_k=2)
    cli = _cli_json(capsys, "classify-images", *paths, "--labels", ",".join(labels), "--templates", template,
                    "--clip-model", str(tiny_clip_dir), "--top-k", "2", "--no-cache", "--quiet",
                    "--format", "json")
    server = _post(http, "/v1/classify/image", {"labels": labels, "templates": [template], "paths": paths,
                                                "top_k": 2})
    assert python == cli == server


def test_search(tiny_clip, index_db, http, capsys):
    from zeroshot.search.index import ImageIndex

    with ImageIndex(index_db, tiny_clip, create=False) as index:
        python = index.query(text="a red square", k=2).to_dict()
    cli = _cli_json(capsys, "search", "a red square", "--db", str(index_db), "-k", "2", "--format", "json")
    server = _post(http, "/v1/search", {"text": "a red square", "top_k": 2})
    # The server adds one thing only it can: a link to fetch each image from it.
    links = [hit.pop("url") for hit in server["results"]]
    assert all(link.startswith("/v1/image?path=") for link in links)
    assert len(python["results"]) == 2 and python == cli == server


def test_detection(tiny_clip, tiny_clip_dir, pictures, http, capsys, tmp_path):
    from zeroshot.detect.detector import ZeroShotDetector

    path = str(pictures / "green.png")
    # The picture is its own example too: a random CLIP's text queries may beat no background prompt,
    # but a region matches its own picture, so there is always something to compare.
    python = ZeroShotDetector(tiny_clip, ["a green square"], [path], threshold=0.0).run(path).to_dict(path)
    capsys.readouterr()
    code = main(["detect", path, "--query", "a green square", "--example", path, "--threshold", "0",
                 "--clip-model", str(tiny_clip_dir), "--output-dir", str(tmp_path / "out"), "--no-cache"])
    out, err = capsys.readouterr()
    assert code == 0, err
    cli = json.loads(out.strip().splitlines()[-1])  # one JSON line per image, as in detections.jsonl
    server = _post(http, "/v1/detect", {"path": path, "queries": ["a green square"], "example_paths": [path],
                                           "threshold": 0.0})
    assert python["detections"] and python == cli == server
    assert json.loads((tmp_path / "out" / "detections.jsonl").read_text()) == python


def test_cli_defaults_are_the_librarys(tiny_clip_dir):
    """Where a CLI option repeats a library default, it must be the same value (else the doors differ)."""
    import inspect

    from zeroshot.cli import _command
    from zeroshot.detect.detector import ZeroShotDetector
    from zeroshot.detect.proposals import RegionProposer

    detect = {p.name: p.default for p in _command().commands["detect"].params}
    library = {**inspect.signature(ZeroShotDetector).parameters,
               **inspect.signature(RegionProposer).parameters}
    for cli_name, library_name in [("threshold", "threshold"), ("example_threshold", "example_threshold"),
                                   ("nms_iou", "nms_iou"), ("context_padding", "context_padding"),
                                   ("batch_size", "batch_size"), ("example_label", "example_label"),
                                   ("example_mode", "example_mode"), ("proposals", "max_proposals"),
                                   ("method", "method"), ("search_mode", "search_mode")]:
        assert detect[cli_name] == library[library_name].default, cli_name
    assert os.fspath(detect["templates"]) in ("imagenet", str(library["templates"].default))
