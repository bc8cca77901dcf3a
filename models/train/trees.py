"""Trains the tree-crown detector for very-high-resolution RGB imagery and exports it to ONNX in the
YOLOv8 layout.

Data: testdata/aerial (real NEON airborne RGB, 10 cm, hand-labelled crowns, from the PyPI package
deepforest): YELL (Yellowstone, 279 crowns, dense conifers) and OSBS_029 (Ordway-Swisher, Florida,
61 crowns, open pine). Each band is scaled per scene from its 2nd to its 98th percentile, as
flight's `Raster::band_range(band, 0.02, 0.98)` does.

Split by site, never by crop: one site trains and the other, a place and a forest the model never
saw, is its validation (its threshold is chosen there). `--train-site yell` (the shipped model)
trains on Yellowstone and holds out all of OSBS_029; `--train-site osbs` is the other fold.

Model: yolo_layout.PyramidDetector with its head at stride 8 (crowns are 20-65 px); 256 px tiles,
crops at zoom 0.6-1.6 (the two sites' crowns differ in size), flips and transposition, strong
per-band gain, offset and noise (the sites differ in light and forest).

Usage (the venv of vessels.py):
    /tmp/trainvenv/bin/python models/train/trees.py --out models/trees-neon.onnx
Fixed seed; CPU is enough.
"""

import csv
import os
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image

import yolo_layout

ROOT = yolo_layout.ROOT
DATA = os.path.join(ROOT, "testdata", "aerial")
TILE = 256
WIDTHS = (16, 32, 64, 96)
BOX_UNIT = 32.0
SEED = 2026
ZOOM = (0.6, 1.6)


def scaled(path):
    raw = np.asarray(Image.open(path).convert("RGB"), np.float32).transpose(2, 0, 1)  # C, H, W
    bands = []
    for band in raw:
        sample = band.reshape(-1)[:: max(1, band.size // 65536)]
        low, high = np.quantile(sample, [0.02, 0.98], method="nearest")
        bands.append(np.clip((band - low) / max(high - low, 1e-6), 0.0, 1.0))
    return np.stack(bands)


def osbs():
    with open(os.path.join(DATA, "OSBS_029.csv")) as f:
        rows = list(csv.DictReader(f))
    boxes = np.array([[float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")] for r in rows], np.float32)
    return scaled(os.path.join(DATA, "OSBS_029.tif")), boxes


def yell():
    name = "2019_YELL_2_541000_4977000_image_crop"
    objects = ET.parse(os.path.join(DATA, f"{name}.xml")).findall("object")
    boxes = np.array(
        [[float(o.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")] for o in objects], np.float32
    )
    return scaled(os.path.join(DATA, f"{name}.png")), boxes


def main():
    parser = yolo_layout.parser("trees-neon.onnx", 3000)
    parser.add_argument("--train-site", choices=["yell", "osbs"], default="yell")
    args = parser.parse_args()
    rng = yolo_layout.seed_everything(SEED)
    image, boxes = yell() if args.train_site == "yell" else osbs()
    print(f"training on {args.train_site}: {len(boxes)} crowns", flush=True)

    def sample():
        tile, inside = yolo_layout.crop(image, boxes, TILE, rng, ZOOM)
        return yolo_layout.photometric(tile, rng, gain=(0.6, 1.4), offset=(-0.15, 0.15), noise=0.03), inside

    detector = yolo_layout.PyramidDetector(3, WIDTHS, BOX_UNIT, reach=2.0, stem_strides=3)
    print(f"{sum(p.numel() for p in detector.parameters())} parameters", flush=True)
    model = yolo_layout.train(detector, sample, TILE, args.steps, batch=16, radius=1, extent=0.5)
    yolo_layout.export(model, 3, TILE, args.out)


if __name__ == "__main__":
    main()
