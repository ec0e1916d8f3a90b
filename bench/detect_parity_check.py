"""Issue 12: does `/v1/detect` report a detection exactly as the library (and the CLI's JSONL) do?

    PYTHONPATH=src python bench/detect_parity_check.py      # exit 1 when they differ

Runs one detection with a tiny random CLIP through `ZeroShotDetector` (whose `Detection.to_dict` the
CLI writes) and through the HTTP route, and compares the two lists of detections.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def main() -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # --help; no options

    from fastapi.testclient import TestClient
    from PIL import Image

    from zeroshot.detect.detector import ZeroShotDetector
    from zeroshot.models.clip import load_clip
    from zeroshot.server.app import create_app
    from zeroshot.server.settings import ServerSettings
    from zeroshot.testing import save_random_clip

    work = Path(tempfile.mkdtemp())
    clip_dir = save_random_clip(work / "clip", size="tiny", seed=0)
    image = Image.new("RGB", (96, 96), (250, 250, 250))
    image.paste((30, 180, 60), (24, 24, 72, 72))
    path = work / "green.png"
    image.save(path)
    detector = ZeroShotDetector(load_clip(clip_dir, device="cpu"), ["a green square"], threshold=0.0)
    library = [d.to_dict() for d in detector.run(str(path)).detections]
    app = create_app(ServerSettings(clip_model=str(clip_dir), device="cpu", image_roots=[work]))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        body = {"path": str(path), "queries": ["a green square"], "threshold": 0.0}
        server = client.post("/v1/detect", json=body).json()["detections"]
    print("library/CLI:", json.dumps(library[:2]))
    print("HTTP       :", json.dumps(server[:2]))
    print("identical:", library == server)
    return 0 if library == server else 1


if __name__ == "__main__":
    sys.exit(main())
