"""Trains the Sentinel-2 vessel detector and exports it to ONNX in the YOLOv8 layout.

Data: testdata/satellite/sen2ships (real 10 m Sentinel-2 L2A port scenes, hand-labelled vessels).
Bands B02, B03, B11: the three every scene has (San Francisco lacks B04 and B08); B11 (SWIR) shows
hulls bright on dark water. Each band is scaled per scene from its 2nd to its 98th percentile, as
flight's `Raster::band_range(band, 0.02, 0.98)` does on board.
Split: Busan and San Francisco train (60 vessels); Casablanca (15 vessels) is held out for
validation and never trained on.

Model: yolo_layout.Detector at stride 4, so that 5-px hulls still get a cell; 128 px tiles, crops
magnified 0.7-2.5 times (vessels come in many lengths, and the scenes show only a few), and the
cells around each vessel's centre cell trained to give its box as well.

Usage (a venv outside the repo: python3 -m venv /tmp/trainvenv && /tmp/trainvenv/bin/pip install
torch onnx numpy tifffile pillow):
    /tmp/trainvenv/bin/python models/train/vessels.py --out models/vessels-s2.onnx
Fixed seed; CPU is enough (a few minutes).
"""

import json
import os

import numpy as np
import tifffile

import yolo_layout

ROOT = yolo_layout.ROOT
DATA = os.path.join(ROOT, "testdata", "satellite", "sen2ships")
BANDS = ["B02", "B03", "B11"]
TILE = 128
LAYERS = [(24, 1), (32, 2), (32, 1), (48, 2), (48, 1), (64, 1), (64, 1)]
BOX_UNIT = 8.0
SEED = 2026
# Each vessel trains the cells around its centre cell too (a hull of 5 px straddles cells, and
# the neighbours fire at inference: they must give its box, not a guess).
RADIUS = 1
# Crops magnified up to 2.5 times: most training hulls (Busan) are 7-11 px, ports elsewhere
# hold longer ones.
ZOOM = (0.7, 2.5)
REACH = 2.0


def load_scene(city):
    bands = []
    for band in BANDS:
        raw = tifffile.imread(os.path.join(DATA, city, f"{band}.tif")).astype(np.float32)
        # the same quantiles as flight's band_range, on a sampled grid
        sample = raw.reshape(-1)[:: max(1, raw.size // 65536)]
        low, high = np.quantile(sample, [0.02, 0.98], method="nearest")
        bands.append(np.clip((raw - low) / max(high - low, 1e-6), 0.0, 1.0))
    image = np.stack(bands)  # C, H, W
    with open(os.path.join(DATA, city, f"{city}_coco.json")) as f:
        coco = json.load(f)
    boxes = np.array([[x, y, x + w, y + h] for a in coco["annotations"] if a["image_id"] == 2 for x, y, w, h in [a["bbox"]]], np.float32)
    return image, boxes


def main():
    args = yolo_layout.arguments("vessels-s2.onnx", 2000)
    rng = yolo_layout.seed_everything(SEED)
    scenes = [load_scene(city) for city in ["busan", "san_francisco"]]

    def sample():
        image, boxes = scenes[rng.randrange(len(scenes))]
        tile, inside = yolo_layout.crop(image, boxes, TILE, rng, ZOOM)
        return yolo_layout.photometric(tile, rng), inside

    detector = yolo_layout.Detector(len(BANDS), LAYERS, BOX_UNIT, reach=REACH)
    model = yolo_layout.train(detector, sample, TILE, args.steps, batch=24, radius=RADIUS)
    yolo_layout.export(model, len(BANDS), TILE, args.out)


if __name__ == "__main__":
    main()
