"""Trains the tree-crown detector for very-high-resolution RGB imagery and exports it to ONNX in the
YOLOv8 layout.

Data: testdata/aerial (real NEON airborne RGB, 10 cm, hand-labelled crowns): YELL (Yellowstone,
279 crowns, conifers) and OSBS_029 (Florida, 61 crowns, open pine). Each band is scaled per scene
from its 2nd to its 98th percentile, as flight's `Raster::band_range(band, 0.02, 0.98)` does.
Split: the right 40 % of OSBS_029 (columns 240 and on: the crowns whose centres lie there) is held
out for validation and never trained on; the rest of OSBS_029 and all of YELL train.

Model: yolo_layout.Detector at stride 8 (crowns are 20-65 px) with a receptive field of about
70 px; 256 px tiles, crops at zoom 0.8-1.25, half of them from each site.

Usage (the venv of vessels.py):
    /tmp/trainvenv/bin/python models/train/trees.py --out models/trees-neon.onnx
Fixed seed; CPU is enough (about a quarter of an hour on two cores).
"""

import csv
import os
import xml.etree.ElementTree as ET

import numpy as np
import torch
from PIL import Image

import yolo_layout

ROOT = yolo_layout.ROOT
DATA = os.path.join(ROOT, "testdata", "aerial")
TILE = 256
LAYERS = [(16, 2), (32, 2), (32, 1), (48, 2), (48, 1), (64, 1), (64, 1)]
BOX_UNIT = 32.0
SEED = 2026
# OSBS_029's columns from here on are the validation split
HELD_OUT_FROM_X = 240


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


def held_out(boxes):
    return (boxes[:, 0] + boxes[:, 2]) / 2 >= HELD_OUT_FROM_X


def iou(a, b):
    x0, y0 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x1, y1 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])
    return inter / (area(a) + area(b) - inter)


def validate(model, image, boxes, min_score=0.4, max_iou=0.4):
    """Precision and recall at IoU 0.5 on the held-out crowns (a quick check while training; the
    card's figures come from flight's own path)."""
    with torch.no_grad():
        out = model(torch.tensor(image)[None])[0].numpy().T  # N, 5
    out = out[out[:, 4] >= min_score]
    corners = np.stack([out[:, 0] - out[:, 2] / 2, out[:, 1] - out[:, 3] / 2, out[:, 0] + out[:, 2] / 2, out[:, 1] + out[:, 3] / 2], 1)
    kept = []
    for i in np.argsort(-out[:, 4]):
        if not kept or iou(corners[i], corners[kept]).max() <= max_iou:
            kept.append(i)
    found = corners[kept]
    found = found[held_out(found)] if len(found) else found
    truth = boxes[held_out(boxes)]
    matched, hits = set(), 0
    for box in found:
        overlaps = iou(box, truth)
        best = int(np.argmax(overlaps))
        if overlaps[best] >= 0.5 and best not in matched:
            matched.add(best)
            hits += 1
    print(f"held out: {len(truth)} crowns, {len(found)} detections, precision {hits / max(len(found), 1):.3f}, recall {hits / len(truth):.3f}")


def main():
    args = yolo_layout.arguments("trees-neon.onnx", 2500)
    rng = yolo_layout.seed_everything(SEED)
    (osbs_image, osbs_boxes), (yell_image, yell_boxes) = osbs(), yell()
    training = osbs_boxes[~held_out(osbs_boxes)]

    def sample():
        if rng.random() < 0.5:
            tile, inside = yolo_layout.crop(osbs_image, training, TILE, rng, (0.8, 1.25), (0, 0, HELD_OUT_FROM_X, osbs_image.shape[1]))
        else:
            tile, inside = yolo_layout.crop(yell_image, yell_boxes, TILE, rng, (0.8, 1.25))
        return yolo_layout.photometric(tile, rng, gain=(0.8, 1.2), offset=(-0.08, 0.08)), inside

    model = yolo_layout.train(yolo_layout.Detector(3, LAYERS, BOX_UNIT), sample, TILE, args.steps, batch=16)
    validate(model, osbs_image, osbs_boxes)
    yolo_layout.export(model, 3, TILE, args.out)


if __name__ == "__main__":
    main()
