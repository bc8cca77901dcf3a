"""Reference outputs of a model from onnxruntime in Python, for flight's Rust path to agree with.

The input is a pattern both languages make exactly: input[c, y, x] = ((7x + 13y + 29c) mod 256) / 255.
The file holds the raw output and the detections above the manifest's score threshold, decoded the
YOLOv8 way (cx, cy, w, h -> corners; best class), before NMS.

    /tmp/trainvenv/bin/python models/train/reference_outputs.py models/vessels-s2.onnx 0.05 > models/reference/vessels-s2.json
"""

import json
import sys

import numpy as np
import onnxruntime as ort


def main(model, min_score):
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    _, channels, size, _ = session.get_inputs()[0].shape
    c, y, x = np.meshgrid(np.arange(channels), np.arange(size), np.arange(size), indexing="ij")
    tensor = (((7 * x + 13 * y + 29 * c) % 256) / 255.0).astype(np.float32)[None]
    output = session.run(None, {session.get_inputs()[0].name: tensor})[0]
    rows = output[0]
    classes = rows.shape[0] - 4
    detections = []
    for i in range(rows.shape[1]):
        scores = rows[4:, i]
        best = int(np.argmax(scores))
        if scores[best] >= min_score:
            cx, cy, w, h = (float(v) for v in rows[:4, i])
            detections.append({"class_id": best, "score": float(scores[best]), "box": [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]})
    json.dump(
        {
            "model": model,
            "onnxruntime": ort.__version__,
            "shape": list(output.shape),
            "classes": classes,
            "min_score": min_score,
            "output": [round(float(v), 6) for v in output.reshape(-1)],
            "detections": detections,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
