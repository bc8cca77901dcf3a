"""Trains the Sentinel-2 vessel detector and exports it to ONNX in the YOLOv8 layout.

Data: testdata/satellite/sen2ships (real 10 m Sentinel-2 L2A port scenes, hand-labelled vessels).
Bands B02, B03, B11: the three every scene has (San Francisco lacks B04 and B08); B11 (SWIR) shows
hulls bright on dark water. Each band is scaled per scene from its 2nd to its 98th percentile, as
flight's `Raster::band_range(band, 0.02, 0.98)` does on board.
Split: Busan and San Francisco train (60 vessels); Casablanca (15 vessels) is held out for
validation and never trained on.

Model: a small anchor-free detector (stride 4, so that 5-px hulls still get a cell) whose graph
ends in the decoding, so the ONNX output is [1, 4 + 1, N] with boxes as cx, cy, w, h in input
pixels and a sigmoid class score: the YOLOv8/YOLO11 export layout flight decodes.

Usage (a venv outside the repo: python3 -m venv /tmp/trainvenv && /tmp/trainvenv/bin/pip install
torch onnx numpy tifffile pillow):
    /tmp/trainvenv/bin/python models/train/vessels.py --out models/vessels-s2.onnx
Fixed seed; CPU is enough (a few minutes).
"""

import argparse
import json
import os
import random

import numpy as np
import tifffile
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
DATA = os.path.join(ROOT, "testdata", "satellite", "sen2ships")
BANDS = ["B02", "B03", "B11"]
TILE = 128
STRIDE = 4
SEED = 2026


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


class Detector(nn.Module):
    def __init__(self):
        super().__init__()

        def block(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU())

        self.features = nn.Sequential(
            block(len(BANDS), 24, 1), block(24, 32, 2), block(32, 32, 1), block(32, 48, 2), block(48, 48, 1),
            block(48, 64, 1), block(64, 64, 1),
        )
        self.head = nn.Conv2d(64, 5, 1)

    def raw(self, x):
        return self.head(self.features(x))  # N, 5, H/4, W/4: dx, dy, log w, log h, logit

    def forward(self, x):
        raw = self.raw(x)
        n, _, gh, gw = raw.shape
        ys = torch.arange(gh, dtype=x.dtype).view(1, gh, 1).expand(1, gh, gw)
        xs = torch.arange(gw, dtype=x.dtype).view(1, 1, gw).expand(1, gh, gw)
        cx = (xs + torch.sigmoid(raw[:, 0])) * STRIDE
        cy = (ys + torch.sigmoid(raw[:, 1])) * STRIDE
        w = torch.exp(raw[:, 2].clamp(-4, 4)) * 8.0
        h = torch.exp(raw[:, 3].clamp(-4, 4)) * 8.0
        score = torch.sigmoid(raw[:, 4])
        return torch.stack([cx, cy, w, h, score], 1).reshape(n, 5, gh * gw)


def sample(scenes, rng):
    image, boxes = scenes[rng.randrange(len(scenes))]
    _, h, w = image.shape
    # scale jitter: vessels come in many lengths, and three scenes show only a few
    zoom = rng.uniform(0.7, 1.5)
    crop = min(int(round(TILE / zoom)), h, w)
    if len(boxes) and rng.random() < 0.6:
        b = boxes[rng.randrange(len(boxes))]
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        x0 = int(np.clip(cx - rng.uniform(8, crop - 8), 0, w - crop))
        y0 = int(np.clip(cy - rng.uniform(8, crop - 8), 0, h - crop))
    else:
        x0, y0 = rng.randrange(w - crop + 1), rng.randrange(h - crop + 1)
    tile = torch.tensor(image[:, y0 : y0 + crop, x0 : x0 + crop].copy())[None]
    tile = F.interpolate(tile, size=(TILE, TILE), mode="bilinear", align_corners=False)[0].numpy()
    factor = TILE / crop
    inside = (boxes.copy() - np.array([x0, y0, x0, y0], np.float32)) * factor
    centre = (inside[:, :2] + inside[:, 2:]) / 2
    inside = inside[(centre >= 0).all(1) & (centre < TILE).all(1)]
    # flips and a right-angle rotation: vessels have no preferred heading
    if rng.random() < 0.5:
        tile = tile[:, :, ::-1].copy()
        inside[:, [0, 2]] = TILE - inside[:, [2, 0]]
    if rng.random() < 0.5:
        tile = tile[:, ::-1, :].copy()
        inside[:, [1, 3]] = TILE - inside[:, [3, 1]]
    if rng.random() < 0.5:
        tile = np.transpose(tile, (0, 2, 1)).copy()
        inside = inside[:, [1, 0, 3, 2]]
    # per-band gain and offset, and noise: scenes are scaled differently, whatever the normalisation
    gain = np.array([rng.uniform(0.7, 1.3) for _ in BANDS], np.float32)[:, None, None]
    offset = np.array([rng.uniform(-0.1, 0.1) for _ in BANDS], np.float32)[:, None, None]
    noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, 0.02, tile.shape).astype(np.float32)
    tile = np.clip(tile * gain + offset + noise, 0, 1)
    return tile, inside


def targets(batch_boxes, grid):
    n = len(batch_boxes)
    objectness = torch.zeros(n, grid, grid)
    box = torch.zeros(n, 4, grid, grid)
    for i, boxes in enumerate(batch_boxes):
        for x0, y0, x1, y1 in boxes:
            cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, 1.0), max(y1 - y0, 1.0)
            gx, gy = int(cx // STRIDE), int(cy // STRIDE)
            if 0 <= gx < grid and 0 <= gy < grid:
                objectness[i, gy, gx] = 1.0
                box[i, :, gy, gx] = torch.tensor([cx / STRIDE - gx, cy / STRIDE - gy, np.log(bw / 8.0), np.log(bh / 8.0)])
    return objectness, box


def train(scenes, steps, rng):
    model = Detector()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps)
    grid = TILE // STRIDE
    for step in range(steps):
        tiles, boxes = zip(*(sample(scenes, rng) for _ in range(24)))
        x = torch.tensor(np.stack(tiles))
        objectness, box = targets(boxes, grid)
        raw = model.raw(x)
        logits = raw[:, 4]
        p = torch.sigmoid(logits)
        # focal loss: the water is almost all negatives
        bce = F.binary_cross_entropy_with_logits(logits, objectness, reduction="none")
        focal = (bce * ((objectness - p).abs() ** 2) * (1 + 3 * objectness)).sum() / max(objectness.sum().item(), 1.0)
        positive = objectness.bool()
        xy = torch.sigmoid(raw[:, 0:2]).permute(0, 2, 3, 1)[positive]
        wh = raw[:, 2:4].permute(0, 2, 3, 1)[positive]
        target = box.permute(0, 2, 3, 1)[positive]
        box_loss = F.l1_loss(xy, target[:, :2]) + F.l1_loss(wh, target[:, 2:]) if positive.any() else torch.tensor(0.0)
        loss = focal + 2.0 * box_loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 200 == 0 or step == steps - 1:
            print(f"step {step}: loss {loss.item():.4f} (focal {focal.item():.4f}, box {float(box_loss):.4f})", flush=True)
    return model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(ROOT, "models", "vessels-s2.onnx"))
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rng = random.Random(SEED)
    scenes = [load_scene(city) for city in ["busan", "san_francisco"]]
    model = train(scenes, args.steps, rng).eval()
    dummy = torch.zeros(1, len(BANDS), TILE, TILE)
    torch.onnx.export(model, dummy, args.out, input_names=["images"], output_names=["output0"], opset_version=17, dynamo=False)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
