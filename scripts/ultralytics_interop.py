#!/usr/bin/env python3
"""Interop check: Ultralytics exports run in `flight-tools detect` as they run in Ultralytics.

Run through scripts/ultralytics-interop.sh, which makes the venv (outside the repository) first.
Ultralytics is AGPL: this script only imports it, and everything it makes (models built from the
package's own YAML files, their ONNX exports, the small training run and its dataset, the signed
manifest and mission flight reads them through, results.json) goes under --work, never into the
repository.

For each model: Ultralytics' own prediction on its ONNX file (and the PyTorch model, for the trained
one) and `flight-tools detect` through a signed manifest entry with the same threshold and IoU, on an image
no bigger than the model's input (no tiling), matched box for box. For the model trained on the
project's own labelled image: mAP@0.5 on a frame larger than a tile, by Ultralytics (whole frame,
and on flight's tiles merged as flight merges them) and by flight (`flight-tools detect` scored with the
same AP code as `flight-tools eval`, and `flight-tools eval`'s own figure).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

# before Ultralytics is imported: no network (no asset, font or weight downloads, no telemetry), and
# its settings file out of the home folder's defaults
WORK_DEFAULT = Path(os.environ.get("KESTREL_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kestrel") / "ultralytics-interop"

ANSI = re.compile(r"\x1b\[[0-9;]*m")
MAX_IOU = 0.7  # Ultralytics' default `iou`, and the manifest's max_iou for every model here
MAX_DET = 100_000  # Ultralytics' cap on boxes an image, lifted: flight has none
TARGET_BOXES = 40  # the untrained models' threshold is chosen to give about this many boxes

# name, how it is built and exported, the images its boxes are compared on
MODELS = [
    dict(name="yolov8n", yaml="yolov8n.yaml", imgsz=640, export={}, images=["native", "osbs"]),
    dict(name="yolo11n-dyn", yaml="yolo11n.yaml", imgsz=640, export={"dynamic": True}, images=["native", "osbs", "osbs-crop"]),
    dict(name="yolo11n-320", yaml="yolo11n.yaml", imgsz=320, export={}, images=["native", "osbs-crop"]),
    dict(name="yolo26n", yaml="yolo26n.yaml", imgsz=640, export={}, images=["native", "osbs"]),
    dict(name="yolo26n-e2e", yaml="yolo26n.yaml", imgsz=640, export={"nms": False}, images=["native", "osbs"]),
    dict(name="yolo11n-nms", yaml="yolo11n.yaml", imgsz=640, export={"nms": True}, images=["native", "osbs"]),
    dict(name="rtdetr", yaml="rtdetr-l.yaml", imgsz=640, export={}, images=["native", "osbs"], family="rtdetr"),
    dict(name="obb", yaml="yolo11n-obb.yaml", imgsz=640, export={}, images=["native", "osbs"], task="obb"),
]
TRAINED = dict(name="trained", yaml="yolo11n.yaml", imgsz=416, export={"dynamic": True}, images=["native", "osbs"])
GROUPS = {"rtdetr": ["rtdetr"], "obb": ["obb"], "trained": ["trained"], "yolo26": ["yolo26n", "yolo26n-e2e"]}


def log(message: str) -> None:
    print(message, flush=True)


class Timer:
    def __init__(self) -> None:
        self.steps: list[tuple[str, float]] = []

    def __call__(self, label: str):
        timer = self

        class Step:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                seconds = time.perf_counter() - self.start
                timer.steps.append((label, seconds))
                log(f"  [{seconds:7.1f} s] {label}")

        return Step()


# ---------------------------------------------------------------------------------------------------
# boxes, matching, AP (the AP code is flight::evaluate's, line for line)


def iou(a, b) -> float:
    w = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    h = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(ours: list[dict], theirs: list[dict]) -> dict:
    """Greedy one-to-one matching by IoU (highest first), then the figures the table shows."""
    pairs = sorted(
        ((iou(a["box"], b["box"]), i, j) for i, a in enumerate(ours) for j, b in enumerate(theirs)),
        reverse=True,
    )
    used_a, used_b, matched = set(), set(), []
    for overlap, i, j in pairs:
        if overlap < 0.5:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        matched.append((overlap, ours[i], theirs[j]))
    ious = [m[0] for m in matched]
    score_diffs = [abs(a["score"] - b["score"]) for _, a, b in matched]
    angle_diffs = [
        abs(math.remainder(a["angle"] - b["angle"], math.pi)) for _, a, b in matched if "angle" in a and "angle" in b
    ]
    result = {
        "ultralytics": len(ours),
        "flight": len(theirs),
        "matched": len(matched),
        "min_iou": min(ious) if ious else None,
        "median_iou": statistics.median(ious) if ious else None,
        "max_score_diff": max(score_diffs) if score_diffs else None,
        "class_mismatches": sum(1 for _, a, b in matched if a["class"] != b["class"]),
        "unmatched_ultralytics": [o for i, o in enumerate(ours) if i not in used_a][:10],
        "unmatched_flight": [o for j, o in enumerate(theirs) if j not in used_b][:10],
    }
    if angle_diffs:
        result["max_angle_diff_rad"] = max(angle_diffs)
    result["pass"] = bool(
        len(ours) == len(theirs) == len(matched)
        and (not ious or min(ious) >= 0.99)
        and result["class_mismatches"] == 0
    )
    return result


def average_precision(hits: list[bool], positives: int) -> float:
    """All-point interpolated AP (flight::evaluate::average_precision)."""
    if positives == 0:
        return 0.0
    points, tp = [], 0
    for rank, hit in enumerate(hits):
        tp += int(hit)
        points.append([tp / positives, tp / (rank + 1)])
    for i in range(len(points) - 2, -1, -1):
        points[i][1] = max(points[i][1], points[i + 1][1])
    area, last = 0.0, 0.0
    for recall, precision in points:
        area += (recall - last) * precision
        last = recall
    return area


def map50(labels: list[dict], detections: list[dict], min_iou: float = 0.5) -> float:
    """mAP over the labels' classes, detections ranked by score, each label matched once (flight-tools eval's)."""
    order = sorted(detections, key=lambda d: -d["score"])
    used = [False] * len(labels)
    outcomes = []
    for d in order:
        best, best_iou = None, -1.0
        for j, label in enumerate(labels):
            if used[j] or label["class"] != d["class"]:
                continue
            overlap = iou(label["box"], d["box"])
            if overlap >= min_iou and overlap > best_iou:
                best, best_iou = j, overlap
        if best is not None:
            used[best] = True
        outcomes.append((d, best is not None))
    classes = sorted({label["class"] for label in labels})
    aps = []
    for c in classes:
        positives = sum(1 for label in labels if label["class"] == c)
        aps.append(average_precision([hit for d, hit in outcomes if d["class"] == c], positives))
    return sum(aps) / len(aps) if aps else 0.0


def read_voc(path: Path) -> list[dict]:
    root = ET.parse(path).getroot()
    boxes = []
    for obj in root.iter("object"):
        b = obj.find("bndbox")
        boxes.append(
            {
                "class": obj.findtext("name"),
                "box": [float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")],
            }
        )
    return boxes


def read_csv_labels(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [
            {"class": row["label"], "box": [float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")]}
            for row in csv.DictReader(f)
        ]


# flight's tiling (flight/src/tile.rs), to run Ultralytics on the tiles flight runs
def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = max(tile - overlap, 1)
    span = length - tile
    count = -(-span // stride) + 1
    return [span * i // (count - 1) for i in range(count)]


def tile_windows(width: int, height: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    return [
        (x, y, min(tile, width), min(tile, height))
        for y in tile_starts(height, tile, overlap)
        for x in tile_starts(width, tile, overlap)
    ]


def merge_tiles(boxes: list[dict], max_iou: float) -> list[dict]:
    """Class-aware greedy NMS between boxes of different tiles (each tile's were suppressed by the
    model's own prediction), as flight merges a frame's tiles (flight::detect::Detector::merge)."""
    kept: list[dict] = []
    for b in sorted(boxes, key=lambda d: -d["score"]):
        if all(k["class"] != b["class"] or k["tile"] == b["tile"] or iou(k["box"], b["box"]) <= max_iou for k in kept):
            kept.append(b)
    return kept


# ---------------------------------------------------------------------------------------------------


class Check:
    def __init__(self, args) -> None:
        self.args = args
        self.repo = Path(args.repo).resolve()
        self.work = Path(args.work).expanduser().resolve()
        if self.work == self.repo or self.repo in self.work.parents:
            sys.exit(f"--work {self.work} is inside the repository: Ultralytics' outputs stay out of it")
        self.flight = Path(args.flight_tools).resolve()
        self.timer = Timer()
        self.degenerate = 0  # boxes of no area Ultralytics gave in the last predictions
        self.results_path = self.work / "results.json"
        self.results = self.load_results()
        for sub in ("exports", "images", "flight", "runs", "dataset", "scenes", "config", "out"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        os.environ["YOLO_OFFLINE"] = "1"
        os.environ["YOLO_CONFIG_DIR"] = str(self.work / "config")
        os.chdir(self.work)
        t = time.perf_counter()
        import numpy  # noqa: F401
        import onnx  # noqa: F401
        import torch
        import ultralytics
        from ultralytics.utils import SETTINGS

        SETTINGS.update({"sync": False, "runs_dir": str(self.work / "runs"), "datasets_dir": str(self.work / "dataset")})
        torch.set_num_threads(max(os.cpu_count() or 1, 1))
        self.results["versions"] = {
            "ultralytics": ultralytics.__version__,
            "torch": torch.__version__,
            "onnxruntime": __import__("onnxruntime").__version__,
            "onnx": __import__("onnx").__version__,
            "python": sys.version.split()[0],
        }
        log(f"imports: {time.perf_counter() - t:.1f} s; versions {self.results['versions']}")

    def load_results(self) -> dict:
        if self.results_path.exists():
            try:
                return json.loads(self.results_path.read_text())
            except json.JSONDecodeError:
                pass
        return {}

    def save(self) -> None:
        self.results.setdefault("timings_s", {}).update({label: round(s, 2) for label, s in self.timer.steps})
        self.results_path.write_text(json.dumps(self.results, indent=2, default=float))

    # --- images ------------------------------------------------------------------------------------
    def images(self) -> dict[str, Path]:
        import cv2

        aerial = self.repo / "testdata" / "aerial"
        osbs = aerial / "OSBS_029.tif"
        crop = self.work / "images" / "osbs-crop.png"
        if not crop.exists():
            image = cv2.imread(str(osbs))
            # not square, and smaller than the 320 input: exercises the centred letterbox's padding
            cv2.imwrite(str(crop), image[40:290, 20:320])
        yell = aerial / "2019_YELL_2_541000_4977000_image_crop.png"
        found = {"osbs": osbs, "osbs-crop": crop, "yell": yell}
        # at each model's own input size (no resize, so no resampling difference): squares of YELL
        for size in sorted({s["imgsz"] for s in MODELS + [TRAINED]}):
            path = self.work / "images" / f"yell-{size}.png"
            if not path.exists():
                cv2.imwrite(str(path), cv2.imread(str(yell))[100 : 100 + size, 100 : 100 + size])
            found[f"native-{size}"] = path
        return found

    # --- flight side -------------------------------------------------------------------------------
    def flight_setup(self, entries: list[dict]) -> Path:
        """A key pair, a manifest with an entry per model (signed) and a mission pointing at them."""
        fdir = self.work / "flight"
        key, pub = fdir / "signing.key", fdir / "model-signing.pub"
        if not key.exists() or not pub.exists():
            out = self.run_flight(["keygen", "--secret", str(key)], check=True).stdout
            hexkey = re.findall(r"\b[0-9a-f]{64}\b", out)
            if not hexkey:
                sys.exit(f"flight-tools keygen printed no verifying key: {out!r}")
            pub.write_text(hexkey[-1] + "\n")
        (fdir / "card.md").write_text("# Interop check model\n\nAn Ultralytics export made by scripts/ultralytics_interop.py.\n")
        lines = ["# Written by scripts/ultralytics_interop.py: every entry signed with signing.key beside it.\n"]
        for e in entries:
            lines += [
                "[[models]]",
                f'name = "{e["name"]}"',
                f'file = "{e["onnx"]}"',
                "bands = [0, 1, 2]",
                f"min_score = {e['min_score']!r}",
                f"max_iou = {MAX_IOU!r}",
                'card = "card.md"',
                "",
            ]
        manifest = fdir / "models.toml"
        manifest.write_text("\n".join(lines))
        for e in entries:
            r = self.run_flight(
                ["sign-model", "--key", str(key), "--manifest", str(manifest), "--verifying-key", str(pub), "--model", e["name"]]
            )
            if r.returncode != 0:
                log(f"  sign-model {e['name']} failed: {r.stderr.strip()}")
        mission = (self.repo / "mission.toml").read_text()
        replace = {
            "manifest": f'"{manifest}"',
            "verifying_key": f'"{pub}"',
            "model": f'"{entries[0]["name"]}"',
            "bands": "[0, 1, 2]",
            "spool_dir": f'"{fdir / "var" / "spool"}"',
            "state_dir": f'"{fdir / "var" / "state"}"',
        }
        out_lines, section = [], ""
        for line in mission.splitlines():
            m = re.match(r"^\[([^\]]+)\]", line)
            if m:
                section = m.group(1)
            k = re.match(r"^(\w+)\s*=", line)
            if k and (section in ("flight.detector", "flight") and k.group(1) in replace):
                line = f"{k.group(1)} = {replace[k.group(1)]}"
            elif k and k.group(1).endswith("_file") and '"keys/' in line:
                # the repository's development keys (scripts/setup.sh), where the mission looks for them
                line = line.replace('"keys/', f'"{self.repo}/keys/')
            out_lines.append(line)
        path = fdir / "mission.toml"
        path.write_text("\n".join(out_lines) + "\n")
        return path

    def run_flight(self, argv: list[str], check: bool = False) -> subprocess.CompletedProcess:
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        r = subprocess.run([str(self.flight), *argv], capture_output=True, text=True, env=env, cwd=self.work)
        if check and r.returncode != 0:
            sys.exit(f"flight {' '.join(argv)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def flight_detect(self, mission: Path, name: str, image: Path) -> tuple[list[dict] | None, str]:
        out = self.work / "out" / f"{name.replace('@', '-')}-{image.stem}.geojson"
        out.unlink(missing_ok=True)
        r = self.run_flight(["detect", "--mission", str(mission), "--model", name, "--geojson", str(out), str(image)])
        message = ANSI.sub("", r.stderr.strip() + "\n" + r.stdout.strip()).strip()
        if r.returncode != 0 or not out.exists():
            return None, message
        features = json.loads(out.read_text()).get("features", [])
        boxes = []
        for f in features:
            p = f.get("properties", {})
            b = {"class": p.get("class"), "score": float(p["score"]), "box": [float(v) for v in p["pixel_box"]]}
            ob = p.get("oriented_box")
            if isinstance(ob, dict):
                ob = ob.get("angle", ob.get("angle_rad"))
                if ob is not None:
                    b["angle"] = float(ob)
            elif isinstance(ob, list) and len(ob) == 5:  # [cx, cy, w, h, angle]
                b["angle"], b["oriented_box"] = float(ob[4]), ob
            for key in ("angle", "angle_rad", "rotation"):
                if key in p:
                    b["angle"] = float(p[key])
            boxes.append(b)
        return boxes, message

    # --- Ultralytics side --------------------------------------------------------------------------
    def export(self, spec: dict) -> Path:
        """Builds the model from its YAML (random weights, seeded) and exports it to ONNX."""
        import torch
        from ultralytics import RTDETR, YOLO

        folder = self.work / "exports" / spec["name"]
        onnx_path = folder / f"{spec['name']}.onnx"
        if onnx_path.exists() and not self.args.reexport:
            return onnx_path
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        cwd = os.getcwd()
        os.chdir(folder)  # Ultralytics writes the export beside the model's file name
        try:
            torch.manual_seed(0)
            if spec.get("family") == "rtdetr":
                model = RTDETR(spec["yaml"])
            else:
                model = YOLO(spec["yaml"], task=spec.get("task", "detect"))
            self.liven(model, spec["imgsz"])
            exported = Path(model.export(format="onnx", imgsz=spec["imgsz"], device="cpu", **spec["export"]))
        finally:
            os.chdir(cwd)
        exported = exported if exported.is_absolute() else folder / exported
        exported.rename(onnx_path)
        return onnx_path

    def liven(self, model, size: int) -> None:
        """Gives the random model's batch norms the statistics of real imagery (one pass over OSBS_029
        and its flips, in training mode, without gradients). Freshly built, every BN layer has mean 0
        and variance 1, the features fade to nothing through the depth of the network and every
        candidate's scores and box are just the head's initial biases: thousands of ties. After this,
        boxes and scores vary from candidate to candidate, as a trained model's do."""
        import cv2
        import numpy as np
        import torch
        from ultralytics.data.augment import LetterBox

        image = cv2.imread(str(self.repo / "testdata" / "aerial" / "OSBS_029.tif"))
        batch = [image, image[:, ::-1], image[::-1], image[::-1, ::-1]]
        x = np.stack([LetterBox((size, size), auto=False)(image=np.ascontiguousarray(b))[..., ::-1].transpose(2, 0, 1) for b in batch])
        x = torch.from_numpy(np.ascontiguousarray(x)).float() / 255.0
        net = model.model
        norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: this one batch's statistics
        net.train()
        with torch.no_grad():
            net(x)
        net.eval()
        for m in norms:
            m.momentum = 0.03

    def ultralytics_model(self, spec: dict, path: Path):
        from ultralytics import RTDETR, YOLO

        if spec.get("family") == "rtdetr" and path.suffix == ".onnx":
            return RTDETR(str(path))
        return YOLO(str(path), task=spec.get("task", "detect"))

    def predict(self, model, spec: dict, source, conf: float) -> list[dict]:
        # Ultralytics keeps at most `max_det` (300) boxes an image by default; flight keeps every box
        # above the threshold
        (result,) = model.predict(source, imgsz=spec["imgsz"], conf=conf, iou=MAX_IOU, max_det=MAX_DET, device="cpu", verbose=False, save=False)
        names = result.names
        boxes = []
        if spec.get("task") == "obb":
            o = result.obb
            ih, iw = result.orig_shape
            for xyxy, xywhr, s, c in zip(o.xyxy.tolist(), o.xywhr.tolist(), o.conf.tolist(), o.cls.tolist()):
                # Ultralytics leaves a rotated box's corners outside the image; flight clips to the frame
                clipped = [min(max(xyxy[0], 0), iw), min(max(xyxy[1], 0), ih), min(max(xyxy[2], 0), iw), min(max(xyxy[3], 0), ih)]
                boxes.append({"class": names[int(c)], "score": s, "box": clipped, "aabb": xyxy, "angle": xywhr[4], "xywhr": xywhr})
        else:
            b = result.boxes
            ih, iw = result.orig_shape
            for xyxy, s, c in zip(b.xyxy.tolist(), b.conf.tolist(), b.cls.tolist()):
                # random weights can give a box whose right edge is left of its left edge: Ultralytics
                # keeps it, flight drops it (no area); it is counted, not compared
                if xyxy[2] <= xyxy[0] or xyxy[3] <= xyxy[1]:
                    self.degenerate += 1
                    continue
                # Ultralytics clips YOLO's boxes to the image but not RT-DETR's; flight clips every box to the frame
                clipped = [min(max(xyxy[0], 0), iw), min(max(xyxy[1], 0), ih), min(max(xyxy[2], 0), iw), min(max(xyxy[3], 0), ih)]
                boxes.append({"class": names[int(c)], "score": s, "box": clipped})
        return boxes

    def choose_threshold(self, model, spec: dict, image: Path) -> float:
        """A threshold in the widest relative gap between scores near the TARGET_BOXES-th box."""
        scores = sorted((b["score"] for b in self.predict(model, spec, str(image), 1e-9)), reverse=True)
        if len(scores) <= TARGET_BOXES // 2:
            return scores[-1] / 2 if scores else 1e-9
        best_k, best_gap = None, -1.0
        for k in range(TARGET_BOXES // 2, min(len(scores) - 1, TARGET_BOXES * 3 // 2) + 1):
            gap = (scores[k - 1] - scores[k]) / max(scores[k], 1e-30)
            if gap > best_gap:
                best_k, best_gap = k, gap
        return math.sqrt(scores[best_k - 1] * scores[best_k]) if scores[best_k] > 0 else scores[best_k - 1] / 2

    # --- what the file says: metadata, output shape, each field's range ---------------------------
    def file_facts(self, spec: dict, path: Path, image: Path) -> dict:
        import cv2
        import numpy as np
        import onnx
        import onnxruntime as ort
        from ultralytics.data.augment import LetterBox

        m = onnx.load(str(path), load_external_data=False)
        meta = {p.key: p.value for p in m.metadata_props}
        dims = lambda vi: [d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim]
        facts = {
            "metadata": {k: (v if len(v) < 400 else v[:400] + "...") for k, v in meta.items()},
            "inputs": {i.name: dims(i) for i in m.graph.input},
            "outputs": {o.name: dims(o) for o in m.graph.output},
            "opset": [(o.domain or "ai.onnx", o.version) for o in m.opset_import],
        }
        size = spec["imgsz"]
        bgr = cv2.imread(str(image))
        rtdetr = spec.get("family") == "rtdetr"
        boxed = LetterBox((size, size), auto=False, scale_fill=rtdetr)(image=bgr)
        x = np.ascontiguousarray(boxed[..., ::-1].transpose(2, 0, 1))[None].astype(np.float32) / 255.0
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        raw = session.run(None, {session.get_inputs()[0].name: x})[0]
        facts["output_on_image"] = list(raw.shape)
        nc = len(eval(meta.get("names", "{}"), {}))  # a Python dict literal
        if raw.shape[-1] == 6 and raw.ndim == 3:  # rows of fields
            fields = raw[0]
            labels = ["f0", "f1", "f2", "f3", "score", "class"]
        else:  # [1, fields, candidates]
            fields = raw[0].T
            labels = ["cx", "cy", "w", "h"] + [f"cls{i}" for i in range(raw.shape[1] - 4)]
            if raw.shape[1] == 4 + nc + 1:
                labels[-1] = "angle"
        ranges = {}
        for i, label in enumerate(labels):
            if label.startswith("cls") and label not in ("cls0", f"cls{nc - 1}"):
                continue
            v = fields[:, i]
            ranges[label] = [float(v.min()), float(v.max())]
        facts["field_ranges_on_image"] = ranges
        facts["classes"] = nc
        if raw.shape[-1] == 6:
            s = fields[:, 4]
            facts["score_sorted_descending"] = bool(np.all(s[:-1] >= s[1:]))
            facts["class_integral"] = bool(np.all(fields[:, 5] == np.round(fields[:, 5])))
        facts["_raw"] = raw  # not saved: for the decoders below
        facts["_letterbox_input"] = (bgr.shape[1], bgr.shape[0])
        return facts

    def check_raw_decoding(self, spec: dict, facts: dict, ours: list[dict]) -> dict:
        """Decodes the raw output by hand as the facts say, and compares with Ultralytics' boxes."""
        import numpy as np

        raw = facts["_raw"]
        width, height = facts["_letterbox_input"]
        size = spec["imgsz"]
        if spec.get("family") == "rtdetr":
            rows = raw[0]
            rows = rows[rows[:, 4] > min(b["score"] for b in ours) - 1e-7] if ours else rows[:0]
            cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
            # normalised centre and size, of the stretched (not letterboxed) input: times the image's sides
            mine = np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1)
            theirs = np.array([b["box"] for b in ours]) if ours else np.zeros((0, 4))
            n = min(len(mine), len(theirs))
            return {
                "decoded_as": "rows [cx, cy, w, h] normalised to 0..1 of the input, score (sigmoid), class id; xyxy = times the image's width/height (Ultralytics stretches, scale_fill)",
                "rows_above_threshold": int(len(mine)),
                "ultralytics_boxes": len(ours),
                "max_abs_px_diff": float(np.abs(mine[:n] - theirs[:n]).max()) if n else None,
            }
        if spec.get("task") == "obb":
            cand = raw[0].T  # [N, 4 + nc + 1]
            gain = min(size / width, size / height)
            padx = round((size - round(width * gain)) / 2 - 0.1)
            pady = round((size - round(height * gain)) / 2 - 0.1)
            diffs, angle_diffs = [], []
            for b in ours:
                x, y, w, h, t = b["xywhr"]
                # the box in input pixels, as the raw candidate would hold it
                target = np.array([x * gain + padx, y * gain + pady, w * gain, h * gain])
                i = int(np.abs(cand[:, :4] - target).sum(1).argmin())
                diffs.append(float(np.abs(cand[i, :4] - target).max()))
                angle_diffs.append(abs(float(cand[i, -1]) - t))
            return {
                "decoded_as": "[1, 4 + nc + 1, N]: cx, cy, w, h in input pixels (letterboxed), nc sigmoid scores, angle (rad) last",
                "max_px_diff_to_nearest_candidate": max(diffs) if diffs else None,
                "max_angle_diff_rad": max(angle_diffs) if angle_diffs else None,
            }
        return {}

    # --- the trained model -------------------------------------------------------------------------
    def dataset(self, size: int) -> Path:
        """The project's labelled NEON frames as a small YOLO dataset: YELL (1249 x 1035, the frame the
        mAP is measured on) cut into `size` tiles, and OSBS_029 (400 x 400), each tile also mirrored
        and turned. The check is of flight against Ultralytics on the same model and frame, not of
        the model on scenes it never saw: the model is scored on the frame it learned from, so that
        its mAP is large enough for a difference of 0.01 to mean something."""
        import cv2
        import numpy as np

        root = self.work / "dataset" / f"neon-{size}"
        data = root / "data.yaml"
        if data.exists():
            return data
        aerial = self.repo / "testdata" / "aerial"
        yell_path = aerial / "2019_YELL_2_541000_4977000_image_crop.png"
        frames = [
            (cv2.imread(str(aerial / "OSBS_029.tif")), [tuple(l["box"]) for l in read_csv_labels(aerial / "OSBS_029.csv")]),
            (cv2.imread(str(yell_path)), [tuple(l["box"]) for l in read_voc(yell_path.with_suffix(".xml"))]),
        ]
        for split in ("train", "val"):
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)

        def write(split: str, stem: str, img, boxes) -> None:
            ih, iw = img.shape[:2]
            cv2.imwrite(str(root / "images" / split / f"{stem}.png"), img)
            rows = []
            for x0, y0, x1, y1 in boxes:
                x0, x1 = max(0, min(x0, x1)), min(iw, max(x0, x1))
                y0, y1 = max(0, min(y0, y1)), min(ih, max(y0, y1))
                if x1 - x0 > 1 and y1 - y0 > 1:
                    rows.append(f"0 {(x0 + x1) / 2 / iw:.6f} {(y0 + y1) / 2 / ih:.6f} {(x1 - x0) / iw:.6f} {(y1 - y0) / ih:.6f}")
            (root / "labels" / split / f"{stem}.txt").write_text("\n".join(rows) + "\n")

        for f, (image, boxes) in enumerate(frames):
            height, width = image.shape[:2]
            for x, y, w, h in tile_windows(width, height, size, size // 8):
                tile = image[y : y + h, x : x + w]
                inside = [(x0 - x, y0 - y, x1 - x, y1 - y) for x0, y0, x1, y1 in boxes if x0 < x + w and x1 > x and y0 < y + h and y1 > y]
                stem = f"f{f}-{x}-{y}"
                write("val", stem, tile, inside)
                for k in range(4):  # quarter turns, each also mirrored: (x, y) -> (y, w - x) per turn
                    img, turned, side = tile, inside, w
                    for _ in range(k):
                        turned = [(y0, side - x1, y1, side - x0) for x0, y0, x1, y1 in turned]
                        img = np.ascontiguousarray(np.rot90(img))
                        side = img.shape[1]
                    iw = img.shape[1]
                    write("train", f"{stem}-rot{k}", img, turned)
                    write("train", f"{stem}-rot{k}-flip", np.ascontiguousarray(img[:, ::-1]), [(iw - x1, y0, iw - x0, y1) for x0, y0, x1, y1 in turned])
        data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: Tree\n")
        return data

    def train(self, spec: dict) -> Path:
        import torch
        from ultralytics import YOLO

        best = self.work / "runs" / "trained" / "weights" / "best.pt"
        if best.exists() and not self.args.retrain:
            return best
        data = self.dataset(spec["imgsz"])
        torch.manual_seed(0)
        model = YOLO(spec["yaml"])
        model.train(
            data=str(data), epochs=self.args.epochs, imgsz=spec["imgsz"], batch=8, workers=0, device="cpu",
            project=str(self.work / "runs"), name="trained", exist_ok=True, plots=False, amp=False, seed=0,
            deterministic=True, verbose=False, patience=1000, cache=False, val=True,
        )  # fmt: skip
        last = self.work / "runs" / "trained" / "weights" / "last.pt"
        # with a handful of epochs, best (by validation fitness) may be an early epoch: fly the last
        return last if last.exists() else best

    # --- one model ---------------------------------------------------------------------------------
    def image_for(self, spec: dict, images: dict, key: str) -> Path:
        return images[f"native-{spec['imgsz']}"] if key == "native" else images[key]

    def compare(self, spec: dict, onnx_path: Path, mission: Path, images: dict, confs: dict, pt_path: Path | None = None) -> list[dict]:
        import cv2

        rows = []
        model = self.ultralytics_model(spec, onnx_path)
        torch_model = self.ultralytics_model(spec, pt_path) if pt_path else None
        for key in spec["images"]:
            image = self.image_for(spec, images, key)
            conf = confs[key]
            self.degenerate = 0
            with self.timer(f"{spec['name']}: Ultralytics (ONNX) predicts {image.name}"):
                ours = self.predict(model, spec, str(image), conf)
            degenerate = self.degenerate
            with self.timer(f"{spec['name']}: flight-tools detect {image.name}"):
                theirs, message = self.flight_detect(mission, f"{spec['name']}@{key}", image)
            h, w = cv2.imread(str(image)).shape[:2]
            sides = [("onnx", ours)]
            if torch_model is not None:
                with self.timer(f"{spec['name']}: Ultralytics (PyTorch) predicts {image.name}"):
                    sides.append(("pytorch", self.predict(torch_model, spec, str(image), conf)))
            for label, boxes in sides:
                row = {"model": spec["name"], "ultralytics_side": label, "image": f"{image.name} ({w}x{h})", "conf": conf}
                if theirs is None:
                    row.update({"ultralytics": len(boxes), "flight": None, "verdict": "refused", "error": message, "pass": False})
                else:
                    row.update(match(boxes, theirs))
                    row["verdict"] = "ran"
                if degenerate:
                    row["ultralytics_degenerate_dropped"] = degenerate
                rows.append(row)
        return rows

    def model_check(self, mission: Path, onnx_path: Path) -> dict:
        r = self.run_flight(["model-check", "--mission", str(mission), "--model", str(onnx_path)])
        text = ANSI.sub("", r.stdout + "\n" + r.stderr).strip()
        layout = re.search(r"detector output: .*", text) or re.search(r"error: .*", text)
        return {"ok": r.returncode == 0, "says": layout.group(0) if layout else text.splitlines()[-1] if text else "", "output": text[-2000:]}

    # --- the trained model's mAP on a frame larger than a tile ------------------------------------
    def trained_map(self, spec: dict, onnx_path: Path, pt_path: Path, mission: Path, images: dict, conf: float, overlap: int) -> dict:
        import cv2

        yell = images["yell"]
        labels = read_voc(yell.with_suffix(".xml"))
        frame = cv2.imread(str(yell))
        height, width = frame.shape[:2]
        out: dict = {"image": yell.name, "size": [width, height], "labels": len(labels), "conf": conf, "max_iou": MAX_IOU}
        onnx_model = self.ultralytics_model(spec, onnx_path)
        pt_model = self.ultralytics_model(spec, pt_path)
        with self.timer("trained: Ultralytics (ONNX) whole frame"):
            whole = self.predict(onnx_model, spec, str(yell), conf)
        with self.timer("trained: Ultralytics (PyTorch) whole frame"):
            whole_pt = self.predict(pt_model, spec, str(yell), conf)
        windows = tile_windows(width, height, spec["imgsz"], overlap)
        tiled = []
        with self.timer(f"trained: Ultralytics (ONNX) on flight's {len(windows)} tiles"):
            for x, y, w, h in windows:
                for b in self.predict(onnx_model, spec, frame[y : y + h, x : x + w], conf):
                    x0, y0, x1, y1 = b["box"]
                    tiled.append({**b, "box": [x0 + x, y0 + y, x1 + x, y1 + y], "tile": (x, y)})
            tiled = merge_tiles(tiled, MAX_IOU)
        with self.timer("trained: flight-tools detect whole frame"):
            flight_boxes, message = self.flight_detect(mission, spec["name"], yell)
        scene = self.work / "scenes" / "yell"
        scene.mkdir(parents=True, exist_ok=True)
        for f in (yell, yell.with_suffix(".xml")):
            link = scene / f.name
            if not link.exists():
                link.symlink_to(f)
        report = self.work / "out" / "trained-eval.json"
        with self.timer("trained: flight-tools eval"):
            r = self.run_flight(["eval", "--mission", str(mission), "--model", spec["name"], "--report", str(report), str(scene)])
        flight_eval = None
        if r.returncode == 0 and report.exists():
            ev = json.loads(report.read_text())
            flight_eval = find_key(ev, "map50")
        out["flight_eval_output"] = (r.stdout + r.stderr)[-1500:]
        out["windows"] = windows
        out["detections"] = {"ultralytics_whole_onnx": len(whole), "ultralytics_whole_pytorch": len(whole_pt), "ultralytics_tiled_onnx": len(tiled), "flight_detect": None if flight_boxes is None else len(flight_boxes)}
        out["map50"] = {
            "ultralytics_whole_frame_onnx": map50(labels, whole),
            "ultralytics_whole_frame_pytorch": map50(labels, whole_pt),
            "ultralytics_flight_tiles_onnx": map50(labels, tiled),
            "flight_detect_scored_here": None if flight_boxes is None else map50(labels, flight_boxes),
            "flight_eval_reported": flight_eval,
        }
        if flight_boxes is None:
            out["flight_error"] = message
        else:
            out["tiled_box_for_box"] = match(tiled, flight_boxes)
        return out

    # --- all of it ---------------------------------------------------------------------------------
    def run(self) -> None:
        wanted = set()
        for name in self.args.only.split(",") if self.args.only else []:
            wanted.update(GROUPS.get(name, [name]))
        specs = [s for s in MODELS + [TRAINED] if not wanted or s["name"] in wanted]
        if self.args.skip_train:
            specs = [s for s in specs if s["name"] != "trained"]
        if not specs:
            sys.exit(f"no model named {self.args.only}: choose from {[s['name'] for s in MODELS + [TRAINED]]} or {list(GROUPS)}")
        images = self.images()
        entries, prepared = [], []
        models_out = self.results.setdefault("models", {})
        for spec in specs:
            try:
                pt_path = None
                if spec["name"] == "trained":
                    with self.timer(f"trained: train {self.args.epochs} epochs on CPU"):
                        pt_path = self.train(spec)
                    with self.timer("trained: export to ONNX"):
                        onnx_path = self.export_trained(spec, pt_path)
                else:
                    with self.timer(f"{spec['name']}: build from {spec['yaml']} and export to ONNX"):
                        onnx_path = self.export(spec)
                model = self.ultralytics_model(spec, onnx_path)
                with self.timer(f"{spec['name']}: choose the thresholds"):
                    confs = {
                        key: self.args.trained_conf if spec["name"] == "trained" else self.choose_threshold(model, spec, self.image_for(spec, images, key))
                        for key in spec["images"]
                    }
                conf = confs[spec["images"][0]]
                facts = self.file_facts(spec, onnx_path, self.image_for(spec, images, spec["images"][0]))
            except Exception as e:  # one model's failure is a row of the table, not the end of the check
                log(f"  {spec['name']}: {type(e).__name__}: {e}")
                models_out[spec["name"]] = {"error": f"{type(e).__name__}: {e}"}
                continue
            entries.append({"name": spec["name"], "onnx": str(onnx_path), "min_score": conf})
            # the same file once more per image, each with the threshold that gives that image its few dozen boxes
            entries += [{"name": f"{spec['name']}@{key}", "onnx": str(onnx_path), "min_score": c} for key, c in confs.items()]
            prepared.append((spec, onnx_path, pt_path, conf, facts, confs))
        if not entries:
            self.save()
            return
        mission = self.flight_setup(entries)
        overlap = int(re.search(r"^tile_overlap\s*=\s*(\d+)", mission.read_text(), re.M).group(1))
        for spec, onnx_path, pt_path, conf, facts, confs in prepared:
            with self.timer(f"{spec['name']}: flight-tools model-check"):
                check = self.model_check(mission, onnx_path)
            rows = self.compare(spec, onnx_path, mission, images, confs, pt_path)
            entry = {
                "onnx": str(onnx_path),
                "export_args": spec["export"],
                "imgsz": spec["imgsz"],
                "min_score": conf,
                "max_iou": MAX_IOU,
                "model_check": check,
                "comparisons": rows,
                "file": {k: v for k, v in facts.items() if not k.startswith("_")},
            }
            if spec.get("family") == "rtdetr" or spec.get("task") == "obb":
                ours = self.predict(self.ultralytics_model(spec, onnx_path), spec, str(self.image_for(spec, images, spec["images"][0])), conf)
                entry["raw_decoding"] = self.check_raw_decoding(spec, facts, ours)
            if spec["name"] == "trained":
                entry["map"] = self.trained_map(spec, onnx_path, pt_path, mission, images, conf, overlap)
            models_out[spec["name"]] = entry
            self.save()
        self.save()
        self.print_table([s["name"] for s in specs])

    def export_trained(self, spec: dict, pt_path: Path) -> Path:
        from ultralytics import YOLO

        onnx_path = self.work / "exports" / "trained" / "trained.onnx"
        if onnx_path.exists() and not self.args.retrain and not self.args.reexport and onnx_path.stat().st_mtime > pt_path.stat().st_mtime:
            return onnx_path
        onnx_path.parent.mkdir(parents=True, exist_ok=True)
        exported = Path(YOLO(str(pt_path)).export(format="onnx", imgsz=spec["imgsz"], device="cpu", **spec["export"]))
        shutil.move(str(exported), onnx_path)
        return onnx_path

    def print_table(self, names: list[str]) -> None:
        models = self.results.get("models", {})
        log("\n" + "=" * 170)
        header = f"{'model':<14} {'ultralytics side':<18} {'image':<26} {'layout (flight-tools model-check)':<44} {'verdict':<8} {'ultra':>5} {'flight':>6} {'match':>5} {'minIoU':>7} {'medIoU':>7} {'dScore':>8} {'pass':>5}"
        log(header)
        log("-" * 170)
        fmt = lambda v, f: "-" if v is None else format(v, f)
        verdict = lambda p: "-" if p is None else "yes" if p else "NO"
        for name in names:
            entry = models.get(name)
            if entry is None:
                continue
            if "error" in entry:
                log(f"{name:<26} ERROR {entry['error']}")
                continue
            says = entry["model_check"]["says"].replace("detector output: ", "")
            for r in entry["comparisons"]:
                log(
                    f"{r['model']:<14} {r['ultralytics_side'][:18]:<18} {r['image'][:26]:<26} {says[:44]:<44} {r['verdict'][:22]:<8} {fmt(r.get('ultralytics'), 'd'):>5} "
                    f"{fmt(r.get('flight'), 'd'):>6} {fmt(r.get('matched'), 'd'):>5} {fmt(r.get('min_iou'), '.4f'):>7} "
                    f"{fmt(r.get('median_iou'), '.4f'):>7} {fmt(r.get('max_score_diff'), '.2e'):>8} {verdict(r.get('pass')):>5}"
                )
                if r.get("error") and r["ultralytics_side"] == "onnx":
                    errors = [line for line in r["error"].splitlines() if "error" in line.lower()] or r["error"].splitlines()[-1:]
                    log(f"{'':<14}   flight: {errors[-1] if errors else ''}")
        log("-" * 170)
        trained = models.get("trained", {}).get("map")
        if trained:
            log(f"trained model, mAP@0.5 on {trained['image']} ({trained['size'][0]}x{trained['size'][1]}, {trained['labels']} labels, conf {trained['conf']}, {len(trained['windows'])} tiles):")
            for k, v in trained["map50"].items():
                log(f"  {k:<34} {fmt(v, '.4f')}")
            if "tiled_box_for_box" in trained:
                t = trained["tiled_box_for_box"]
                log(f"  tiled Ultralytics vs flight, box for box: {t['ultralytics']} vs {t['flight']}, matched {t['matched']}, min IoU {fmt(t['min_iou'], '.4f')}, max score diff {fmt(t['max_score_diff'], '.2e')}")
        for name in names:
            entry = models.get(name, {})
            if "raw_decoding" in entry:
                log(f"{name} output facts: {json.dumps(entry['file']['outputs'])}, fields on the image {json.dumps(entry['file']['field_ranges_on_image'])}")
                log(f"  {json.dumps(entry['raw_decoding'])}")
        log(f"\nresults: {self.results_path}")
        log("timings (s): " + ", ".join(f"{label}: {s:.1f}" for label, s in self.timer.steps))


def find_key(tree, key):
    """The first `key` in a JSON tree, depth first (flight-tools eval's pooled figure is its first map50)."""
    if isinstance(tree, dict):
        if key in tree and isinstance(tree[key], (int, float)):
            return tree[key]
        for v in tree.values():
            found = find_key(v, key)
            if found is not None:
                return found
    elif isinstance(tree, list):
        for v in tree:
            found = find_key(v, key)
            if found is not None:
                return found
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    p.add_argument("--flight-tools", default=None, help="the flight-tools binary (default REPO/target/debug/flight-tools)")
    p.add_argument("--work", default=str(WORK_DEFAULT), help="where everything Ultralytics makes goes (outside the repo)")
    p.add_argument("--only", default="", help="comma-separated models or groups (rtdetr, obb, yolo26, trained)")
    p.add_argument("--list", action="store_true", help="list the models and exit")
    p.add_argument("--skip-train", action="store_true", help="leave out the trained model")
    p.add_argument("--epochs", type=int, default=40, help="training epochs for the trained model (the figures in docs/benchmarks.md: 40)")
    p.add_argument("--trained-conf", type=float, default=0.01, help="the trained model's min_score / conf (flight-tools eval's curves stop at 0.05)")
    p.add_argument("--reexport", action="store_true", help="export again even if the ONNX file is there")
    p.add_argument("--retrain", action="store_true", help="train again even if the weights are there")
    args = p.parse_args()
    if args.list:
        for s in MODELS + [TRAINED]:
            print(f"{s['name']:<14} {s['yaml']:<18} imgsz {s['imgsz']:<4} export {s['export']} images {s['images']}")
        print(f"groups: {GROUPS}")
        return
    args.flight_tools = args.flight_tools or str(Path(args.repo) / "target" / "debug" / "flight-tools")
    start = time.perf_counter()
    check = Check(args)
    check.run()
    log(f"total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
