"""Re-run a battery of bad inputs against the CLI and a loopback server, and count how each was handled.

    PYTHONPATH=src python -m bench.hardening_probe            # about 2-4 minutes on 2 busy cores

Everything runs on 127.0.0.1 with a tiny random CLIP (no hub, no language model needed) and stops by
itself. It reports:
- CLI: bad invocations tried, handled correctly (exit 2, one line on stderr, no traceback, within the
  time limit: a hang counts as a failure);
- server: bad requests tried, handled correctly (the expected 4xx, the error shape), the 5xx count, and
  after every bad request a good one on the same kept-alive connection (all must be answered);
- kills: `zeroshot index` SIGKILLed mid-run, and whether the catalog stayed intact and a re-run finished;
- load: concurrent clients mixing good and bad requests on kept-alive connections for a few seconds.
Writes bench/results/hardening_probe.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SURROGATE = '"\\ud800"'


def make_world(folder: Path) -> dict:
    """Images (good, a FIFO, /dev/zero, a non-image, an odd name), a tiny CLIP, and an index of them."""
    from zeroshot.models.clip import load_clip
    from zeroshot.search.index import ImageIndex
    from zeroshot.testing import save_random_clip

    images = folder / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(images / f"img{i}.png")
    os.mkfifo(images / "fifo.png")
    os.symlink("/dev/zero", images / "zero.png")
    (images / "notes.png").write_text("not an image")
    with open(os.path.join(os.fsencode(images), b"caf\xe9.png"), "wb") as handle:
        handle.write((images / "img0.png").read_bytes())
    clip_dir = save_random_clip(folder / "clip", size="tiny", seed=0)
    clip = load_clip(clip_dir, device="cpu")
    db = folder / "db"
    with ImageIndex(db, clip) as index:
        index.add([images])
    empty = folder / "empty"
    empty.mkdir()
    bad_text = folder / "latin1.jsonl"
    bad_text.write_bytes(b'{"text": "caf\xe9", "label": "a"}\n')
    taken = folder / "taken"
    taken.write_text("x")
    return {
        "images": images,
        "clip_dir": clip_dir,
        "clip": clip,
        "db": db,
        "empty": empty,
        "latin1": bad_text,
        "taken": taken,
        "folder": folder,
    }


# --- the CLI -----------------------------------------------------------------------------------------


def cli_cases(w: dict) -> list[list[str]]:
    clip, db, images = str(w["clip_dir"]), str(w["db"]), w["images"]
    return [
        [],
        ["no-such-command"],
        ["search"],
        ["search", "cat", "--db", db, "-k", "abc"],
        ["search", "cat", "--db", db, "-k", "0"],
        ["search", "cat", "--db", db, "--min-score", "nan"],
        ["serve", "--port", "abc"],
        ["serve", "--port", "70000"],
        ["serve", "--max-upload-mb", "nan"],
        ["serve", "--max-upload-mb", "-1"],
        ["generate", ""],
        ["generate", "x", "--temperature", "nan"],
        ["generate", "x", "--top-p", "inf"],
        ["classify-text", "a", "--labels", "a,b", "--max-chars", "0"],
        ["classify-text", "a", "--labels", "a,b", "--max-chars", "-5"],
        ["eval-text", "bbc-news", "--limit", "0"],
        ["eval-text", "bbc-news", "--limit", "-3"],
        ["fewshot-curve", "bbc-news", "--limit", "0"],
        ["fewshot-curve", str(w["latin1"])],
        ["fewshot-curve", str(w["latin1"]), "--output-dir", str(w["taken"])],
        [
            "bench-lm",
            "--model",
            str(w["folder"] / "missing"),
            "--lengths",
            "4",
            "--output-dir",
            str(w["folder"] / "bench.json"),
        ],
        ["index", str(w["empty"]), "--db", str(w["folder"] / "db2"), "--clip-model", clip, "-q"],
        ["similarity", str(images / "fifo.png"), str(images / "img0.png"), "--clip-model", clip],
        ["similarity", str(images / "zero.png"), str(images / "img0.png"), "--clip-model", clip],
        ["search", "--image", str(images / "fifo.png"), "--db", db],
        ["search", "--image", str(images / "zero.png"), "--db", db],
        ["classify-images", str(images / "fifo.png"), "-l", "a,b", "--clip-model", clip, "-q", "--no-cache"],
        ["detect", str(images / "img0.png"), "--example", str(images / "fifo.png"), "--clip-model", clip],
        ["search", "cat", "--db", str(images)],
        ["index", str(images), "--db", str(images / "img0.png"), "--clip-model", clip, "-q"],
    ]


def run_cli(argv: list[str], timeout_s: float = 90) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "zeroshot.cli", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return {"argv": argv, "ok": False, "why": f"still running after {timeout_s:.0f} s"}
    err = done.stderr.strip()
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    ok = done.returncode == 2 and "Traceback" not in err and (not argv or len(lines) == 1)
    return {"argv": argv, "ok": ok, "exit": done.returncode, "stderr": err[-300:]}


# --- the server ----------------------------------------------------------------------------------------


def server_cases(w: dict) -> list[dict]:
    """(method, path, body or files, headers, expected statuses)."""
    json_header = {"Content-Type": "application/json"}
    raw = [
        ("/v1/generate", '{"prompt": @S}'),
        ("/v1/generate", '{"prompt": "x", "stop": [@S]}'),
        ("/v1/completions", '{"model": "m", "prompt": @S}'),
        ("/v1/classify/text", '{"texts": [@S], "labels": ["a", "b"]}'),
        ("/v1/classify/text", '{"texts": ["x"], "labels": [@S, "b"]}'),
        ("/v1/classify/image", '{"labels": [@S, "b"], "paths": ["img0.png"]}'),
        ("/v1/classify/image", '{"labels": ["a", "b"], "templates": [@S]}'),
        ("/v1/search", '{"text": @S}'),
        ("/v1/search", '{"image_path": @S}'),
        ("/v1/detect", '{"queries": [@S], "path": "img0.png"}'),
        ("/v1/detect", '{"queries": ["a"], "path": @S}'),
    ]
    cases = [
        dict(
            method="POST",
            path=p,
            content=b.replace("@S", SURROGATE).encode(),
            headers=json_header,
            expect={400},
        )
        for p, b in raw
    ]
    for path in (
        "/v1/generate",
        "/v1/classify/text",
        "/v1/classify/image",
        "/v1/search",
        "/v1/detect",
        "/v1/completions",
    ):
        cases += [
            dict(
                method="POST",
                path=path,
                content=b'{"text": "\xed\xa0\x80"}',
                headers=json_header,
                expect={400},
            ),
            dict(
                method="POST",
                path=path,
                content=b"[" * 100_000 + b"]" * 100_000,
                headers=json_header,
                expect={400},
            ),
            dict(
                method="POST",
                path=path,
                content=b'{"k": ' + b"9" * 5000 + b"}",
                headers=json_header,
                expect={400},
            ),
            dict(method="POST", path=path, content=b'{"k": NaN}', headers=json_header, expect={400}),
            dict(method="POST", path=path, content=b"{not json", headers=json_header, expect={400}),
            dict(
                method="POST",
                path=path,
                content=b"x",
                headers={"Content-Type": "text/plain"},
                expect={415, 422},
            ),
            dict(method="POST", path=path, json={"unknown": 1}, expect={400, 422}),
            dict(method="POST", path=path, content=b"x" * (11 << 20), headers=json_header, expect={413}),
            dict(method="GET", path=path, expect={405}),
        ]
    long_name = "a" * 300 + ".png"
    for name, expect in [
        (long_name, {400}),
        ("~root/x.png", {404}),
        ("~nosuchuser/x.png", {404}),
        ("../../etc/passwd", {403}),
        ("/etc/passwd", {403}),
        ("fifo.png", {400, 403, 422}),
        ("zero.png", {403}),
        ("notes.png", {422}),
        ("nope.png", {404}),
        ("x\x00.png", {400}),
        ("a/" * 2100 + "x.png", {400}),
    ]:
        if name != "notes.png":  # /v1/image serves files by suffix without decoding them: a 200 is right
            cases.append(dict(method="GET", path="/v1/image", params={"path": name}, expect=expect))
        cases.append(
            dict(
                method="POST",
                path="/v1/classify/image",
                json={"labels": ["a", "b"], "paths": [name]},
                expect=expect | {422},
            )
        )
    labels = [f"label {i}" for i in range(5000)]
    cases += [
        dict(
            method="POST",
            path="/v1/classify/image",
            json={"labels": labels, "paths": ["img0.png"]},
            expect={413},
        ),
        dict(
            method="POST",
            path="/v1/classify/image",
            json={"labels": labels[:200], "templates": ["a {}"] * 80, "paths": ["img0.png"]},
            expect={413},
        ),
        dict(method="POST", path="/v1/classify/text", json={"texts": ["x"], "labels": labels}, expect={413}),
        dict(method="POST", path="/v1/completions", json={"model": "m", "prompt": ["hi"] * 65}, expect={413}),
        dict(
            method="POST",
            path="/v1/classify/image",
            data={"labels": "a,b"},
            files=[("files", (f"{i}.png", _png(3000, 3000))) for i in range(12)],
            expect={413},
        ),
        dict(
            method="POST",
            path="/v1/classify/image",
            data={"labels": "a,b"},
            files=[("files", ("x.png", b"not an image"))],
            expect={422},
        ),
        dict(method="POST", path="/v1/search", json={"text": "x", "k": 0}, expect={422}),
        dict(method="POST", path="/v1/search", json={"text": "x", "k": 10**6}, expect={422}),
        dict(
            method="POST",
            path="/v1/classify/image",
            json={"labels": ["a"], "paths": ["img0.png"]},
            expect={422},
        ),
        dict(
            method="POST",
            path="/v1/classify/image",
            json={"labels": ["a", "b"], "templates": ["no slot"], "paths": ["img0.png"]},
            expect={422},
        ),
        dict(method="GET", path="/v1/info", headers={"Host": "evil.example"}, expect={403}),
        dict(method="GET", path="/v1/info", headers={"Origin": "http://evil.example"}, expect={403}),
        dict(
            method="POST",
            path="/v1/classify/image",
            headers={"Origin": "http://evil.example"},
            data={"labels": "a,b"},
            files=[("files", ("a.png", _png(8, 8)))],
            expect={403},
        ),
    ]
    return cases


def _png(width: int, height: int) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


GOOD = [
    ("GET", "/health", None),
    ("GET", "/v1/info", None),
    ("POST", "/v1/search", {"text": "a photo", "k": 3}),
    (
        "POST",
        "/v1/classify/image",
        {"labels": ["cat", "dog"], "templates": ["a photo of a {}"], "paths": ["img1.png"]},
    ),
]


def send(client: httpx.Client, case: dict) -> httpx.Response:
    kwargs = {
        key: case[key] for key in ("content", "json", "data", "files", "params", "headers") if key in case
    }
    return client.request(case["method"], case["path"], **kwargs)


def probe_server(w: dict) -> dict:
    from zeroshot.server.app import create_app
    from zeroshot.server.background import serve_in_thread
    from zeroshot.server.settings import ServerSettings

    settings = ServerSettings(
        clip_model=str(w["clip_dir"]), device="cpu", db=w["db"], image_roots=[w["images"]], batch_window_ms=2
    )
    result = {"tried": 0, "handled": 0, "5xx": 0, "good_on_reused": 0, "good_answered": 0, "failures": []}
    with (
        serve_in_thread(create_app(settings)) as base_url,
        httpx.Client(base_url=base_url, timeout=60) as client,
    ):
        for method, path, body in GOOD:  # load the model and the index once
            client.request(method, path, json=body)
        for number, case in enumerate(server_cases(w)):
            result["tried"] += 1
            try:
                response = send(client, case)
                status = response.status_code
                shaped = set(response.json().get("error", {})) >= {"message", "type", "param", "code"}
            except Exception as exc:  # noqa: BLE001 - a dropped connection is a failure to count
                status, shaped = -1, False
                result["failures"].append({"case": _describe(case), "error": repr(exc)[:200]})
            result["5xx"] += status >= 500
            if status in case["expect"] and shaped:
                result["handled"] += 1
            elif status != -1:
                result["failures"].append({"case": _describe(case), "status": status})
            method, path, body = GOOD[number % len(GOOD)]
            result["good_on_reused"] += 1
            try:
                result["good_answered"] += client.request(method, path, json=body).status_code == 200
            except httpx.HTTPError:
                pass
        result["load"] = load_test(base_url, w)
    return result


def _describe(case: dict) -> str:
    body = case.get("content") or json.dumps(case.get("json") or case.get("params") or case.get("data"))
    body = body if isinstance(body, str) else body[:60].decode("utf-8", "backslashreplace")
    return f"{case['method']} {case['path']} {body[:80]} {case.get('headers', '')}"


def load_test(base_url: str, w: dict, clients: int = 8, seconds: float = 10.0) -> dict:
    """Each client alternates a bad request and a good one on its own kept-alive connection."""
    cases = [c for c in server_cases(w) if "files" not in c and len(c.get("content", b"")) < 100_000]
    stop = time.monotonic() + seconds
    counts = {"requests": 0, "good": 0, "good_answered": 0, "5xx": 0}
    lock = threading.Lock()

    def client_loop(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=base_url, timeout=30) as client:
            while time.monotonic() < stop:
                case = cases[rng.integers(len(cases))]
                method, path, body = GOOD[rng.integers(2)]  # health and info: cheap
                try:
                    bad = send(client, case).status_code
                except httpx.HTTPError:
                    bad = -1
                try:
                    good = client.request(method, path, json=body).status_code
                except httpx.HTTPError:
                    good = -1
                with lock:
                    counts["requests"] += 2
                    counts["good"] += 1
                    counts["good_answered"] += good == 200
                    counts["5xx"] += (bad >= 500) + (good >= 500)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client_loop, range(clients)))
    return {"clients": clients, "seconds": seconds, **counts}


# --- kills ---------------------------------------------------------------------------------------------


def probe_kills(w: dict, kills: int) -> dict:
    from zeroshot.search.index import ImageIndex

    photos = w["folder"] / "many"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(150):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(photos / f"p{i:03d}.png")
    db = w["folder"] / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [
        sys.executable,
        "-m",
        "zeroshot.cli",
        "index",
        str(photos),
        "--db",
        str(db),
        "-m",
        str(w["clip_dir"]),
        "--batch-size",
        "4",
        "-q",
    ]
    survived = 0
    for kill in range(kills):
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2.5 + 0.7 * kill)
        process.send_signal(signal.SIGKILL)
        process.wait()
        try:
            with sqlite3.connect(db / "catalog.sqlite") as catalog:
                intact = catalog.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        except sqlite3.Error:
            intact = not (db / "catalog.sqlite").exists()
        survived += intact
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    with ImageIndex(db) as index:
        complete = done.returncode == 0 and len(index) == 150
    return {"kills": kills, "catalog_intact_after_kill": survived, "rerun_completed_all_150": complete}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "hardening_probe.json")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zeroshot-probe-") as folder:
        world = make_world(Path(folder))
        with ThreadPoolExecutor(2) as pool:
            cli = list(pool.map(run_cli, cli_cases(world)))
        server = probe_server(world)
        kills = probe_kills(world, args.kills)
    report = {
        "cli": {
            "tried": len(cli),
            "handled": sum(r["ok"] for r in cli),
            "failures": [r for r in cli if not r["ok"]],
        },
        "server": server,
        "kills": kills,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    total = report["cli"]["tried"] + server["tried"]
    handled = report["cli"]["handled"] + server["handled"]
    print(
        f"bad inputs tried {total} (CLI {report['cli']['tried']}, server {server['tried']}); "
        f"handled correctly {handled}; server 5xx {server['5xx']}"
    )
    print(
        f"good requests on reused connections after each bad one: {server['good_answered']}/"
        f"{server['good_on_reused']} answered"
    )
    load = server["load"]
    print(
        f"load: {load['clients']} clients x {load['seconds']:.0f} s, {load['requests']} requests, "
        f"good answered {load['good_answered']}/{load['good']}, 5xx {load['5xx']}"
    )
    print(
        f"kills: {kills['catalog_intact_after_kill']}/{kills['kills']} left an intact catalog; re-run "
        f"completed: {kills['rerun_completed_all_150']}"
    )
    for failure in report["cli"]["failures"] + server["failures"]:
        print("not handled:", json.dumps(failure, default=str)[:300])
    print(f"wrote {args.out} ({report['seconds']} s)")


if __name__ == "__main__":
    main()
