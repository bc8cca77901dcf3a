"""What every Kestrel detector's training shares: a small anchor-free network whose graph ends in
the YOLOv8/YOLO11 export layout flight decodes ([batch, 4 + 1, N]: cx, cy, w, h in input pixels and a
sigmoid class score), crops with scale jitter biased towards labelled objects, the geometric and
photometric augmentation, the targets, the training loop and the ONNX export (the cloud screen,
clouds.py, uses the seeding, the crops, the command line and the export too).

Each model's script (vessels.py, trees.py, clouds.py) says what is its own: data, bands, scaling,
layers, tile size and the split it holds out.
"""

import argparse
import os
import random

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def data_dir(folder, upstream):
    """`folder` of the shared reference data (`$KESTREL_DATA`, or `../shared/data` beside the
    repository): third-party data is read from there, never committed. Stops with a message that
    names the folder and where the data comes from when it is missing."""
    base = os.environ.get("KESTREL_DATA") or os.path.join(ROOT, "..", "shared", "data")
    path = os.path.normpath(os.path.join(base, folder))
    if not os.path.isdir(path):
        raise SystemExit(f"training data folder {path} is missing (set KESTREL_DATA to the shared data folder; upstream: {upstream})")
    return path


def parser(model_file, steps):
    """The training scripts' command line: where the ONNX file goes (`models/` by default) and how
    many optimisation steps; a script may add its own options."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(ROOT, "models", model_file))
    parser.add_argument("--steps", type=int, default=steps)
    return parser


def arguments(model_file, steps):
    return parser(model_file, steps).parse_args()


def seed_everything(seed):
    """A fixed seed everywhere, and every core: the same script gives the same model."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    return random.Random(seed)


class Detector(nn.Module):
    """3x3 conv + batch norm + SiLU blocks (`layers`: (channels, stride) each), a 1x1 head, and
    the decoding: each cell of the final grid predicts one box near it. With `reach` (cells), a
    cell's box centre may lie up to `reach` cells beyond it (from its own centre), so that the
    cells around an object can be trained to give its box too (`train(..., radius=1)`); without,
    the centre lies inside the cell."""

    def __init__(self, channels, layers, box_unit, reach=None):
        super().__init__()
        self.reach = reach
        blocks, cin = [], channels
        for cout, stride in layers:
            blocks.append(nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU()))
            cin = cout
        self.features = nn.Sequential(*blocks)
        self.head = nn.Conv2d(cin, 5, 1)
        self.stride = int(np.prod([s for _, s in layers]))
        self.box_unit = box_unit

    def raw(self, x):
        return self.head(self.features(x))  # N, 5, H/stride, W/stride: dx, dy, log w, log h, logit

    def forward(self, x):
        raw = self.raw(x)
        n, _, gh, gw = raw.shape
        ys = torch.arange(gh, dtype=x.dtype).view(1, gh, 1).expand(1, gh, gw)
        xs = torch.arange(gw, dtype=x.dtype).view(1, 1, gw).expand(1, gh, gw)
        cx = (xs + self.offset(raw[:, 0])) * self.stride
        cy = (ys + self.offset(raw[:, 1])) * self.stride
        w = torch.exp(raw[:, 2].clamp(-4, 4)) * self.box_unit
        h = torch.exp(raw[:, 3].clamp(-4, 4)) * self.box_unit
        score = torch.sigmoid(raw[:, 4])
        return torch.stack([cx, cy, w, h, score], 1).reshape(n, 5, gh * gw)

    def offset(self, raw):
        """A box centre's place relative to its cell's corner, in cells."""
        if self.reach is None:
            return torch.sigmoid(raw)
        return 0.5 + self.reach * (2 * torch.sigmoid(raw) - 1)


def conv(cin, cout, stride=1, kernel=3):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


class Residual(nn.Module):
    """Two 3x3 convolutions with a shortcut around them (a backbone stage's repeated block)."""

    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels), conv(channels, channels))

    def forward(self, x):
        return x + self.body(x)


class PyramidDetector(Detector):
    """A backbone of strided stages with residual blocks down to four times the head's stride, and
    a top-down feature pyramid (upsample, concatenate with the stage at that stride, convolve) back
    to the head's stride: the head sees the small object's own pixels and the context around it
    (water or quay, harbour or open sea) from the deeper stages. `widths` are the channels of the
    stem and of the three stages; `stem_strides` stride-2 convolutions make the head's stride (2:
    4 px; 3: 8 px, for larger objects at the same cost per cell). Decoding, targets and export are
    `Detector`'s."""

    def __init__(self, channels, widths, box_unit, reach=None, stem_strides=2):
        nn.Module.__init__(self)
        w2, w4, w8, w16 = widths
        self.reach = reach
        self.box_unit = box_unit
        self.stride = 2**stem_strides
        stem = [conv(channels, w2, 2)] + [conv(w2, w2, 2) for _ in range(stem_strides - 2)]
        self.stem = nn.Sequential(*stem, conv(w2, w4, 2), Residual(w4))
        self.down8 = nn.Sequential(conv(w4, w8, 2), Residual(w8), Residual(w8))
        self.down16 = nn.Sequential(conv(w8, w16, 2), Residual(w16))
        self.lateral16 = conv(w16, w8, kernel=1)
        self.merge8 = conv(2 * w8, w8)
        self.lateral8 = conv(w8, w4, kernel=1)
        self.merge4 = nn.Sequential(conv(2 * w4, w4), conv(w4, w4))
        self.head = nn.Conv2d(w4, 5, 1)

    def raw(self, x):
        p4 = self.stem(x)
        p8 = self.down8(p4)
        p16 = self.down16(p8)
        up8 = F.interpolate(self.lateral16(p16), scale_factor=2.0, mode="nearest")
        n8 = self.merge8(torch.cat([up8, p8], 1))
        up4 = F.interpolate(self.lateral8(n8), scale_factor=2.0, mode="nearest")
        return self.head(self.merge4(torch.cat([up4, p4], 1)))


def crop(image, boxes, tile, rng, zoom_range, area=None):
    """A `tile`-sized crop of `image` (C, H, W) at a random zoom, centred near a labelled box more
    often than not, within `area` (x0, y0, x1, y1) when given; flipped and transposed at random
    (overhead objects have no preferred heading). Returns the crop and the boxes whose centres
    fall in it, in crop pixels."""
    ax0, ay0, ax1, ay1 = area if area is not None else (0, 0, image.shape[2], image.shape[1])
    zoom = rng.uniform(*zoom_range)
    side = min(int(round(tile / zoom)), ax1 - ax0, ay1 - ay0)
    if len(boxes) and rng.random() < 0.6:
        b = boxes[rng.randrange(len(boxes))]
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        x0 = int(np.clip(cx - rng.uniform(8, side - 8), ax0, ax1 - side))
        y0 = int(np.clip(cy - rng.uniform(8, side - 8), ay0, ay1 - side))
    else:
        x0, y0 = ax0 + rng.randrange(ax1 - ax0 - side + 1), ay0 + rng.randrange(ay1 - ay0 - side + 1)
    cut = torch.tensor(image[:, y0 : y0 + side, x0 : x0 + side].copy())[None]
    cut = F.interpolate(cut, size=(tile, tile), mode="bilinear", align_corners=False)[0].numpy()
    inside = (boxes.copy() - np.array([x0, y0, x0, y0], np.float32)) * (tile / side)
    centre = (inside[:, :2] + inside[:, 2:]) / 2
    inside = inside[(centre >= 0).all(1) & (centre < tile).all(1)]
    if rng.random() < 0.5:
        cut = cut[:, :, ::-1].copy()
        inside[:, [0, 2]] = tile - inside[:, [2, 0]]
    if rng.random() < 0.5:
        cut = cut[:, ::-1, :].copy()
        inside[:, [1, 3]] = tile - inside[:, [3, 1]]
    if rng.random() < 0.5:
        cut = np.transpose(cut, (0, 2, 1)).copy()
        inside = inside[:, [1, 0, 3, 2]]
    return cut, inside


def photometric(tile, rng, gain=(0.7, 1.3), offset=(-0.1, 0.1), noise=0.02):
    """Per-band gain and offset, and noise: scenes are lit and scaled differently, whatever the
    per-scene normalisation."""
    bands = tile.shape[0]
    g = np.array([rng.uniform(*gain) for _ in range(bands)], np.float32)[:, None, None]
    o = np.array([rng.uniform(*offset) for _ in range(bands)], np.float32)[:, None, None]
    n = np.random.default_rng(rng.randrange(1 << 30)).normal(0, noise, tile.shape).astype(np.float32)
    return np.clip(tile * g + o + n, 0, 1)


def targets(batch_boxes, grid, stride, box_unit, radius=0, extent=0.0):
    """Each box is the positive of the cell its centre falls in and, with `radius`, of the cells
    up to `radius` away from that one; with `extent`, also of the cells whose centres lie within
    that share of the box's half-width and half-height of its centre (a long hull is claimed
    along its length, not only at its middle). A cell claimed twice keeps the box nearest its
    centre. The box target is the centre relative to the cell's corner, in cells, and the log
    size."""
    n = len(batch_boxes)
    objectness = torch.zeros(n, grid, grid)
    box = torch.zeros(n, 4, grid, grid)
    for i, boxes in enumerate(batch_boxes):
        nearest = {}
        for x0, y0, x1, y1 in boxes:
            cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, 1.0), max(y1 - y0, 1.0)
            gx, gy = int(cx // stride), int(cy // stride)
            rx = max(radius, int(np.ceil(extent * bw / 2 / stride)))
            ry = max(radius, int(np.ceil(extent * bh / 2 / stride)))
            for y in range(gy - ry, gy + ry + 1):
                for x in range(gx - rx, gx + rx + 1):
                    if not (0 <= x < grid and 0 <= y < grid):
                        continue
                    near = abs(x - gx) <= radius and abs(y - gy) <= radius
                    inside = abs((x + 0.5) * stride - cx) <= extent * bw / 2 and abs((y + 0.5) * stride - cy) <= extent * bh / 2
                    if not (near or inside):
                        continue
                    distance = (cx / stride - x - 0.5) ** 2 + (cy / stride - y - 0.5) ** 2
                    # (with no radius the last box wins, as the committed tree model was trained)
                    if radius and (y, x) in nearest and nearest[(y, x)] <= distance:
                        continue
                    nearest[(y, x)] = distance
                    objectness[i, y, x] = 1.0
                    box[i, :, y, x] = torch.tensor(
                        [cx / stride - x, cy / stride - y, np.log(bw / box_unit), np.log(bh / box_unit)]
                    )
    return objectness, box


def optimise(model, loss_at, steps, lr=3e-3):
    """AdamW with a one-cycle schedule over `steps`; `loss_at(step)` gives the step's loss and a
    few words on its parts for the log."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps)
    for step in range(steps):
        loss, parts = loss_at(step)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 200 == 0 or step == steps - 1:
            print(f"step {step}: loss {loss.item():.4f}{parts}", flush=True)
    return model.eval()


def train(model, sample, tile, steps, batch, lr=3e-3, radius=0, extent=0.0):
    """Focal loss on the score (almost every cell is background), L1 on the box; the positives
    as `targets` gives them with `radius` and `extent` (a model trained with either needs the
    reach for it)."""
    grid = tile // model.stride

    def loss_at(_step):
        tiles, boxes = zip(*(sample() for _ in range(batch)))
        x = torch.tensor(np.stack(tiles))
        objectness, box = targets(boxes, grid, model.stride, model.box_unit, radius, extent)
        raw = model.raw(x)
        logits = raw[:, 4]
        p = torch.sigmoid(logits)
        bce = F.binary_cross_entropy_with_logits(logits, objectness, reduction="none")
        focal = (bce * ((objectness - p).abs() ** 2) * (1 + 3 * objectness)).sum() / max(objectness.sum().item(), 1.0)
        positive = objectness.bool()
        xy = model.offset(raw[:, 0:2]).permute(0, 2, 3, 1)[positive]
        wh = raw[:, 2:4].permute(0, 2, 3, 1)[positive]
        target = box.permute(0, 2, 3, 1)[positive]
        box_loss = F.l1_loss(xy, target[:, :2]) + F.l1_loss(wh, target[:, 2:]) if positive.any() else torch.tensor(0.0)
        return focal + 2.0 * box_loss, f" (focal {focal.item():.4f}, box {box_loss.item():.4f})"

    return optimise(model, loss_at, steps, lr)


def export(model, channels, tile, out):
    """The ONNX file flight loads: input `images` [batch, C, tile, tile], output `output0`."""
    dummy = torch.zeros(1, channels, tile, tile)
    torch.onnx.export(model, dummy, out, input_names=["images"], output_names=["output0"], opset_version=17, dynamo=False)
    with_batch_axis(out)
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


def with_batch_axis(path):
    """Rewrites the exported graph in place so that its first axis is a free `batch`: the trace
    fixes it at the dummy's 1, in the input, the output and the shape the output is reshaped to.
    Flight runs several tiles per call when its scheduler allows (the tiles' results must be, and
    are checked at load to be, the same as one at a time). Done on the file rather than through
    `dynamic_axes` so that the weights and every other node stay exactly as trained (the committed
    models were rewritten with this same function: models/train/batch_axis.py)."""
    import onnx
    from onnx import numpy_helper

    graph_model = onnx.load(path)
    graph = graph_model.graph
    for value in list(graph.input) + list(graph.output):
        first = value.type.tensor_type.shape.dim[0]
        first.ClearField("dim_value")
        first.dim_param = "batch"
    reshaped = {node.input[1] for node in graph.node if node.op_type == "Reshape" and node.output[0] == "output0"}
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] in reshaped:
            shape = numpy_helper.to_array(node.attribute[0].t).copy()
            shape[0] = -1
            node.attribute[0].t.CopyFrom(numpy_helper.from_array(shape, node.attribute[0].t.name))
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, path)
