"""Zero-shot object detection: classical region proposals kept or rejected by CLIP (`ZeroShotDetector`),
and a detection dataset written from a folder of images (JSON lines, annotated PNGs, COCO)."""
