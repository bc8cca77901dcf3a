"""Trains the Sentinel-2 vessel detector and exports it to ONNX in the YOLOv8 layout.

Data: the shared reference data's satellite/sen2ships and satellite/sen2ships-more (real 10 m
Sentinel-2 L2A port scenes, hand-labelled vessels; upstream ShipDetectionExperts/sen2ships, MIT),
read from `$KESTREL_DATA` or ../shared/data, never committed.

Bands B08 (near infrared, 10 m) and B11 (short-wave infrared, 20 m resampled to 10 m): water is
dark in both and hulls bright, so the two separate ship from sea better than the visible bands;
every labelled scene but San Francisco has them. Each band is scaled per scene from its 2nd to its
98th percentile, as flight's `Raster::band_range(band, 0.02, 0.98)` does on board.

Split by scene, never by crop (SCENES below): eight scenes train; Casablanca and Marseille are the
validation scenes that the operating threshold and the settings were chosen on; Busan and Genoa
are test scenes, scored once at the end and used for no choice. `--hold-out A,B,...` trains on
every labelled scene but those (the k-fold figures of the model card).

Model: yolo_layout.PyramidDetector (a residual backbone to stride 16 and a top-down pyramid back to
a stride-4 head: 5-px hulls still get a cell, and the head sees the water or the quay around
them); 128 px tiles; crops magnified 0.6-2.0 times (median hull lengths differ between scenes from
9 to 31 px), flips and transposition, per-band gain, offset and noise; 40 % of crops fall anywhere
in a scene (mostly land and quays: the hard negatives), the rest near a labelled vessel.

Usage (a venv outside the repo: python3 -m venv /tmp/trainvenv && /tmp/trainvenv/bin/pip install
torch onnx numpy tifffile pillow):
    /tmp/trainvenv/bin/python models/train/vessels.py --out models/vessels-s2.onnx
Fixed seed; CPU is enough.
"""

import json
import os

import numpy as np
import tifffile

import yolo_layout

UPSTREAM = "github.com/ShipDetectionExperts/sen2ships (MIT)"
BANDS = ["B08", "B11"]
TILE = 128
WIDTHS = (16, 32, 64, 96)
BOX_UNIT = 16.0
SEED = 2026
RADIUS = 1
# cells along the middle half of a hull are its positives too (a 40 px ferry spans 10 cells)
EXTENT = 0.5
REACH = 3.0
ZOOM = (0.6, 2.0)
# scene -> (folder of the shared data, role)
SCENES = {
    "algiers": ("sen2ships-more", "training"),
    "athens": ("sen2ships-more", "training"),
    "cartagena": ("sen2ships-more", "training"),
    "durban": ("sen2ships-more", "training"),
    "gdynia": ("sen2ships-more", "training"),
    "los_angeles": ("sen2ships-more", "training"),
    "qingdao": ("sen2ships-more", "training"),
    "santos": ("sen2ships-more", "training"),
    "casablanca": ("sen2ships", "validation"),
    "marseille": ("sen2ships-more", "validation"),
    "busan": ("sen2ships", "test"),
    "genoa": ("sen2ships-more", "test"),
}


def load_scene(city):
    folder = os.path.join(yolo_layout.data_dir(os.path.join("satellite", SCENES[city][0]), UPSTREAM), city)
    bands = []
    for band in BANDS:
        raw = tifffile.imread(os.path.join(folder, f"{band}.tif")).astype(np.float32)
        # the same quantiles as flight's band_range, on a sampled grid
        sample = raw.reshape(-1)[:: max(1, raw.size // 65536)]
        low, high = np.quantile(sample, [0.02, 0.98], method="nearest")
        bands.append(np.clip((raw - low) / max(high - low, 1e-6), 0.0, 1.0))
    with open(os.path.join(folder, f"{city}_coco.json")) as f:
        coco = json.load(f)
    boxes = np.array([[x, y, x + w, y + h] for a in coco["annotations"] for x, y, w, h in [a["bbox"]]], np.float32)
    return np.stack(bands), boxes


def main():
    parser = yolo_layout.parser("vessels-s2.onnx", 5000)
    parser.add_argument("--hold-out", help="comma-separated scenes not to train on (instead of SCENES' roles)")
    args = parser.parse_args()
    rng = yolo_layout.seed_everything(SEED)
    if args.hold_out:
        held = set(args.hold_out.split(","))
        unknown = held - SCENES.keys()
        if unknown:
            raise SystemExit(f"--hold-out: unknown scenes {sorted(unknown)} (known: {sorted(SCENES)})")
        training = [city for city in SCENES if city not in held]
    else:
        training = [city for city, (_, role) in SCENES.items() if role == "training"]
    print("training on", ", ".join(training), flush=True)
    scenes = [load_scene(city) for city in training]

    def sample():
        image, boxes = scenes[rng.randrange(len(scenes))]
        tile, inside = yolo_layout.crop(image, boxes, TILE, rng, ZOOM)
        return yolo_layout.photometric(tile, rng), inside

    detector = yolo_layout.PyramidDetector(len(BANDS), WIDTHS, BOX_UNIT, reach=REACH)
    print(f"{sum(p.numel() for p in detector.parameters())} parameters", flush=True)
    model = yolo_layout.train(detector, sample, TILE, args.steps, batch=24, radius=RADIUS, extent=EXTENT)
    yolo_layout.export(model, len(BANDS), TILE, args.out)


if __name__ == "__main__":
    main()
