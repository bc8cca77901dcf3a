"""Trains the cloud screen: a small fully convolutional model that gives each 8x8-pixel cell of a
tile its probability of cloud, from calibrated reflectance in Sentinel-2 bands B02, B03 and B11
(the reference mission's detector bands), and exports it to ONNX: input `images` [1, 3, 128, 128]
(reflectance, 0..1), output `output0` [1, 1, 16, 16]. Flight's cloud fraction of a tile is the
share of the cells over it whose probability reaches the manifest's `min_score`.

No labelled cloud masks are at hand, so the clouds are synthetic, composited onto real clear
imagery: I = (1 - a) I_ground + a C, with a cloud's reflectance C (nearly white, from dim grey decks
to bright tops) and an opacity a whose shapes are either fractal noise or the bright parts of real
cloud fields (GOES-16 full disk, Landsat 7: the shared data's satellite/{goes16,landsat7}, read from
$KESTREL_DATA or ../shared/data, never committed). A cell's target is
its share of pixels with a >= 0.1. The ground is the sen2ships Sentinel-2 scenes (B02, B03, B11);
they are contrast-stretched, not calibrated, so each crop is mapped onto a clear-sky reflectance
range drawn at random (2nd percentile 0.01-0.05 and 98th 0.12-0.30 in B02 and B03, 0.2-0.45 in B11).
sentinel2-cloudy-clear (real TOA reflectance, dates 0-1 cloudy, 2-4 clear) is never trained on:
it is the acceptance check, printed at the end.

Usage (the venv of vessels.py):
    /tmp/trainvenv/bin/python models/train/clouds.py --out models/clouds-s2.onnx
Fixed seed; CPU is enough (a few minutes).
"""

import os

import numpy as np
import tifffile
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

import yolo_layout

ROOT = yolo_layout.ROOT
SATELLITE = yolo_layout.data_dir(
    "satellite", "ShipDetectionExperts/sen2ships, rasterio's test data and sentinel-hub/eo-learn on GitHub"
)
BANDS = ["B02", "B03", "B11"]
TILE = 128
STRIDE = 8
CLOUD_OPACITY = 0.1
SEED = 2026


def ground_scenes():
    scenes = []
    for city in ["busan", "casablanca", "san_francisco"]:
        raw = np.stack([tifffile.imread(os.path.join(SATELLITE, "sen2ships", city, f"{b}.tif")).astype(np.float32) for b in BANDS])
        low, high = np.quantile(raw.reshape(3, -1)[:, ::7], [0.02, 0.98], axis=1)
        scenes.append(np.clip((raw - low[:, None, None]) / (high - low)[:, None, None], -0.05, 1.2).astype(np.float32))
    return scenes


def cloud_fields():
    """Grey levels of real cloud fields, 0..1."""
    fields = []
    for path in [os.path.join(SATELLITE, "goes16", "goes.tif"), os.path.join(SATELLITE, "landsat7", "RGB.byte.tif")]:
        grey = np.asarray(Image.open(path).convert("L"), np.float32) / 255.0
        fields.append(grey)
    return fields


def fractal(rng, side):
    noise = np.zeros((side, side), np.float32)
    for octave, weight in [(4, 1.0), (8, 0.5), (16, 0.25), (32, 0.125)]:
        coarse = torch.tensor(np.random.default_rng(rng.randrange(1 << 30)).normal(size=(1, 1, octave, octave)), dtype=torch.float32)
        noise += weight * F.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False)[0, 0].numpy()
    return noise


def opacity(rng, fields):
    """A cloud opacity map: a random coverage of fractal noise or of a real cloud field's bright parts."""
    if rng.random() < 0.4:
        field = fields[rng.randrange(len(fields))]
        side = rng.randrange(24, min(field.shape) // 2)
        y, x = rng.randrange(field.shape[0] - side), rng.randrange(field.shape[1] - side)
        cut = torch.tensor(field[y : y + side, x : x + side].copy())[None, None]
        shape = F.interpolate(cut, size=(TILE, TILE), mode="bilinear", align_corners=False)[0, 0].numpy()
    else:
        shape = fractal(rng, TILE)
    coverage = rng.choice([0.0, 0.0, rng.uniform(0, 1), rng.uniform(0, 1), 1.0, 1.0])
    threshold = np.quantile(shape, 1.0 - coverage) if coverage < 1.0 else shape.min() - 1.0
    softness = rng.uniform(0.02, 0.3) * (shape.std() + 1e-6)
    a = 1.0 / (1.0 + np.exp(-(shape - threshold) / softness))
    # thin cloud and haze as well as thick cloud
    return (a * rng.uniform(0.25, 1.0)).astype(np.float32)


def sample(rng, scenes, fields):
    scene = scenes[rng.randrange(len(scenes))]
    tile, _ = yolo_layout.crop(scene, np.zeros((0, 4), np.float32), TILE, rng, (0.5, 2.0))
    dark = np.array([rng.uniform(0.01, 0.05), rng.uniform(0.01, 0.05), rng.uniform(0.005, 0.05)], np.float32)
    bright = np.array([rng.uniform(0.12, 0.30), rng.uniform(0.12, 0.30), rng.uniform(0.2, 0.45)], np.float32)
    ground = dark[:, None, None] + tile * (bright - dark)[:, None, None]
    a = opacity(rng, fields)
    blue = rng.uniform(0.12, 0.9)
    cloud = np.array([blue, blue * rng.uniform(0.93, 1.0), blue * rng.uniform(0.55, 1.2)], np.float32)
    image = (1 - a) * ground + a * cloud[:, None, None]
    image += np.random.default_rng(rng.randrange(1 << 30)).normal(0, 0.005, image.shape).astype(np.float32)
    mask = torch.tensor((a >= CLOUD_OPACITY).astype(np.float32))[None, None]
    target = F.avg_pool2d(mask, STRIDE)[0, 0].numpy()
    return np.clip(image, 0, 1), target


class CloudScreen(nn.Module):
    def __init__(self):
        super().__init__()

        def block(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU())

        self.features = nn.Sequential(block(len(BANDS), 16, 2), block(16, 24, 2), block(24, 32, 2), block(32, 32, 1))
        self.head = nn.Conv2d(32, 1, 1)

    def logits(self, x):
        return self.head(self.features(x))

    def forward(self, x):
        return torch.sigmoid(self.logits(x))


def train(rng, steps):
    scenes, fields = ground_scenes(), cloud_fields()
    model = CloudScreen()

    def loss_at(_step):
        images, targets = zip(*(sample(rng, scenes, fields) for _ in range(32)))
        logits = model.logits(torch.tensor(np.stack(images)))[:, 0]
        return F.binary_cross_entropy_with_logits(logits, torch.tensor(np.stack(targets))), ""

    return yolo_layout.optimise(model, loss_at, steps)


def acceptance(model):
    """The cloud fraction of each date of sentinel2-cloudy-clear (never trained on)."""
    scenes = np.load(os.path.join(SATELLITE, "sentinel2-cloudy-clear", "REFERENCE_SCENES.npy"))
    for date, scene in enumerate(scenes):
        image = torch.tensor(np.clip(scene[:, :, [1, 2, 11]].transpose(2, 0, 1), 0, 1))[None]
        image = F.interpolate(image, size=(TILE, TILE), mode="bilinear", align_corners=False)
        with torch.no_grad():
            cells = model(image)
            print(f"date {date}: mean cloud probability {cells.mean().item():.3f}, cells at 0.5 or more {(cells >= 0.5).float().mean().item():.3f}")


def main():
    args = yolo_layout.arguments("clouds-s2.onnx", 1200)
    rng = yolo_layout.seed_everything(SEED)
    model = train(rng, args.steps)
    acceptance(model)
    yolo_layout.export(model, len(BANDS), TILE, args.out)


if __name__ == "__main__":
    main()
