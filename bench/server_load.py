"""Load test of `zeroshot serve` on loopback: text classification under concurrent clients, then the
same with malformed requests mixed in.

    python -m bench.server_load                      # 16 clients, 60 s per phase
    python -m bench.server_load --clients 4 --seconds 10

Starts the real server as a subprocess (`python -m zeroshot.cli serve`) on 127.0.0.1 with the default
LM, so client and server do not share a GIL. Phase "clean": every client loops on good
`/v1/classify/text` requests. Phase "mixed": one request in three is malformed (broken JSON, an
oversize body, wrong types, an oversize upload, an unknown label set, and since issue 33 a 5,000-query
`/v1/detect`, a lone surrogate under `application/merge-patch+json`, two `Content-Type` headers and a
5000-digit integer in a multipart JSON list). Reports requests/s, p50/p99 latency of the good (light)
requests and errors for each; malformed requests must get a 4xx, none a 5xx, good ones a 200, and
`/health` must answer afterwards. Writes `bench/results/server_load.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HOST = "127.0.0.1"  # loopback only, always
RESULTS = Path(__file__).parent / "results" / "server_load.json"
LABELS = ["sport", "politics", "business", "technology", "entertainment"]
TEXTS = [
    "The striker scored twice as the home side won the cup final.",
    "The prime minister faces a confidence vote in parliament next week.",
    "Shares in the bank fell sharply after its quarterly results.",
    "The new phone has a faster chip and a brighter screen.",
    "The film won three awards at the festival on Sunday night.",
    "Inflation rose to its highest level in a decade, the central bank said.",
    "The tennis champion withdrew from the tournament with an injury.",
    "A software update fixes the security flaw in millions of routers.",
]
UPLOAD_LIMIT_MB = 1.0
IMAGE_NAMES = [f"{colour}-{i}.png" for colour in ("red", "green", "blue", "grey") for i in range(2)]
SURROGATE_BODY = b'{"input": ["\\ud800"]}'  # valid JSON, not valid Unicode
IMAGE_LABELS = ["a red ball", "a green ball", "a blue ball", "a grey ball", "a car"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(port: int, extra: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "zeroshot.cli", "serve", "--host", HOST, "--port", str(port),
               "--max-upload-mb", str(UPLOAD_LIMIT_MB), *extra]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_healthy(base_url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {process.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not become healthy")


def good_request(rng: random.Random, task: str = "text") -> dict:
    if task == "image":
        return {"method": "POST", "url": "/v1/classify/image",
                "json": {"paths": [rng.choice(IMAGE_NAMES)], "labels": IMAGE_LABELS}}
    return {"method": "POST", "url": "/v1/classify/text",
            "json": {"texts": [rng.choice(TEXTS)], "labels": LABELS,
                     "description": "Topic of the news story."}}


def make_image_root(folder: Path) -> None:
    """Small coloured pictures for the image task (random-weight CLIP: speed, not accuracy)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    colours = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (30, 60, 220), "grey": (128, 128, 128)}
    for index, name in enumerate(IMAGE_NAMES):
        image = Image.new("RGB", (320, 240), (240, 240, 240))
        ImageDraw.Draw(image).ellipse((40 + 10 * index, 40, 260, 200), fill=colours[name.split("-")[0]])
        image.save(folder / name)


def _small_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def bad_request(rng: random.Random) -> tuple[str, dict]:
    """A malformed request and its kind; every one must be refused with a 4xx."""
    oversize = b"x" * int((UPLOAD_LIMIT_MB + 0.5) * 1024 * 1024)
    kinds = {
        "bad_json": {"method": "POST", "url": "/v1/classify/text", "content": b'{"texts": ["unclosed',
                     "headers": {"Content-Type": "application/json"}},
        "oversize_body": {"method": "POST", "url": "/v1/classify/text", "content": oversize,
                          "headers": {"Content-Type": "application/json"}},
        "wrong_types": {"method": "POST", "url": "/v1/classify/text",
                        "json": {"texts": 42, "labels": "sport"}},
        "oversize_upload": {"method": "POST", "url": "/v1/classify/image", "data": {"labels": ["a", "b"]},
                            "files": {"files": ("big.png", oversize, "image/png")}},
        "bad_demonstration": {"method": "POST", "url": "/v1/classify/text",
                              "json": {"texts": ["x"], "labels": LABELS,
                                       "demonstrations": [{"text": "y", "label": "not-a-label"}]}},
        "not_json_object": {"method": "POST", "url": "/v1/generate", "json": ["a", "list"]},
        # Issue 33: a request that cost 166 s of the CLIP thread before queries were capped.
        "detect_5000_queries": {"method": "POST", "url": "/v1/detect",
                                "data": {"queries": json.dumps([f"thing {i}" for i in range(5000)])},
                                "files": {"image": ("a.png", _small_png(), "image/png")}},
        "merge_patch_surrogate": {"method": "POST", "url": "/v1/embeddings", "content": SURROGATE_BODY,
                                  "headers": {"Content-Type": "application/merge-patch+json"}},
        "two_content_types": {"method": "POST", "url": "/v1/embeddings", "content": SURROGATE_BODY,
                              "headers": [("Content-Type", "application/json"),
                                          ("Content-Type", "text/plain")]},
        "multipart_huge_int": {"method": "POST", "url": "/v1/classify/image",
                               "data": {"labels": "[" + "9" * 5000 + ", 1]"},
                               "files": {"files": ("a.png", _small_png(), "image/png")}},
    }
    kind = rng.choice(sorted(kinds))
    return kind, kinds[kind]


async def client_loop(http: httpx.AsyncClient, seed: int, stop_at: float, bad_every: int, log: dict,
                      task: str) -> None:
    rng = random.Random(seed)
    count = 0
    while time.monotonic() < stop_at:
        count += 1
        malformed = bad_every and count % bad_every == 0
        kind, request = bad_request(rng) if malformed else ("good", good_request(rng, task))
        started = time.perf_counter()
        try:
            response = await http.request(**request)
            status = response.status_code
        except httpx.HTTPError as exc:
            status = f"transport error: {type(exc).__name__}"
        elapsed = time.perf_counter() - started
        if kind == "good":
            log["good_latencies"].append(elapsed)
            if status != 200:
                log["good_errors"].append(str(status))
        else:
            log["bad_statuses"].setdefault(kind, []).append(status)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def run_phase(base_url: str, clients: int, seconds: float, bad_every: int, api_key: str | None,
                    task: str) -> dict:
    log: dict = {"good_latencies": [], "good_errors": [], "bad_statuses": {}}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120, limits=limits) as http:
        counter = f"{task}_classification"
        info_before = (await http.get("/v1/info")).json()["batching"][counter]
        started = time.monotonic()
        await asyncio.gather(*(client_loop(http, seed, started + seconds, bad_every, log, task)
                               for seed in range(clients)))
        wall = time.monotonic() - started
        info_after = (await http.get("/v1/info")).json()["batching"][counter]
        health = (await http.get("/health")).status_code
    latencies = log["good_latencies"]
    bad = {kind: {"count": len(statuses), "statuses": sorted({str(s) for s in statuses}),
                  "all_4xx": all(isinstance(s, int) and 400 <= s < 500 for s in statuses)}
           for kind, statuses in sorted(log["bad_statuses"].items())}
    calls = info_after["calls"] - info_before["calls"]
    merged = info_after["requests"] - info_before["requests"]
    return {"clients": clients, "seconds": round(wall, 2), "good_requests": len(latencies),
            "good_requests_per_s": round(len(latencies) / wall, 2),
            "p50_ms": _ms(percentile(latencies, 50)), "p99_ms": _ms(percentile(latencies, 99)),
            "max_ms": _ms(max(latencies) if latencies else None),
            "good_errors": len(log["good_errors"]), "good_error_samples": log["good_errors"][:5],
            "malformed_requests": sum(v["count"] for v in bad.values()), "malformed_by_kind": bad,
            "malformed_all_4xx": all(v["all_4xx"] for v in bad.values()),
            "five_xx": sum(1 for statuses in log["bad_statuses"].values() for s in statuses
                           if isinstance(s, int) and s >= 500)
            + sum(1 for s in log["good_errors"] if s.isdigit() and int(s) >= 500),
            "model_calls": calls, "mean_requests_per_call": round(merged / calls, 2) if calls else None,
            "health_after": health}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--bad-every", type=int, default=3,
                        help="in the mixed phase, every n-th request is bad")
    parser.add_argument("--server-arg", action="append", default=[], help="extra `zeroshot serve` option")
    parser.add_argument("--task", choices=["text", "image"], default="text",
                        help="text: /v1/classify/text with the default LM; image: /v1/classify/image with a "
                             "random-weight CLIP (runs where no LM can load)")
    parser.add_argument("--output", type=Path, default=None,
                        help="default: bench/results/server_load.json (server_load_image.json for images)")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.clients > 64 or args.seconds <= 0 or args.seconds > 300:
        parser.error("keep it bounded: 1-64 clients, at most 300 s per phase")
    port = _free_port()
    base_url = f"http://{HOST}:{port}"
    api_key = "bench-" + os.urandom(8).hex()
    env_key = os.environ.get("ZEROSHOT_API_KEY")
    os.environ["ZEROSHOT_API_KEY"] = api_key  # the server reads it; it never appears on a command line
    workdir = Path(tempfile.mkdtemp(prefix="zeroshot-load-"))
    server_args = list(args.server_arg)
    if args.task == "image":
        from zeroshot.testing import save_random_clip

        make_image_root(workdir / "images")
        save_random_clip(workdir / "clip", "tiny")
        server_args += ["--clip-model", str(workdir / "clip"), "--device", "cpu",
                        "--image-root", str(workdir / "images")]
    process = start_server(port, server_args)
    if env_key is None:
        del os.environ["ZEROSHOT_API_KEY"]
    else:
        os.environ["ZEROSHOT_API_KEY"] = env_key
    try:
        started = time.monotonic()
        wait_healthy(base_url, process)
        warm_up = good_request(random.Random(0), args.task)
        warm = httpx.post(base_url + warm_up["url"], json=warm_up["json"],
                          headers={"Authorization": f"Bearer {api_key}"}, timeout=300)
        warm.raise_for_status()
        startup_s = time.monotonic() - started
        info = httpx.get(f"{base_url}/v1/info", headers={"Authorization": f"Bearer {api_key}"}).json()
        clean = asyncio.run(run_phase(base_url, args.clients, args.seconds, 0, api_key, args.task))
        print("clean:", json.dumps(clean), flush=True)
        mixed = asyncio.run(run_phase(base_url, args.clients, args.seconds, args.bad_every, api_key,
                                      args.task))
        print("mixed:", json.dumps(mixed), flush=True)
        alive = process.poll() is None
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    result = {
        "benchmark": "server_load",
        "command": "python -m bench.server_load " + " ".join(argv if argv is not None else sys.argv[1:]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "server": {"lm": info["models"]["lm"], "clip": info["models"]["clip"], "versions": info["versions"],
                   "limits": info["settings"]["limits"], "batching": info["settings"]["batching"],
                   "startup_and_first_request_s": round(startup_s, 2)},
        "workload": {"endpoint": warm_up["url"], "labels": IMAGE_LABELS if args.task == "image" else LABELS,
                     "items_per_request": 1, "clients": args.clients, "seconds_per_phase": args.seconds,
                     "malformed_every": args.bad_every},
        "clean": clean, "mixed": mixed, "server_alive_after": alive,
        "passed": (clean["good_errors"] == 0 and mixed["good_errors"] == 0 and mixed["malformed_all_4xx"]
                   and clean["health_after"] == mixed["health_after"] == 200 and alive),
    }
    default_name = "server_load.json" if args.task == "text" else "server_load_image.json"
    output = args.output or RESULTS.with_name(default_name)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}; passed: {result['passed']}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
