"""Gives the committed models a free batch axis (`yolo_layout.with_batch_axis`, which `export` now
applies to every new export): run once on the files trained before it, then re-sign them with
`flight-tools sign-model`. Their weights and every other node are untouched, so the figures on their
cards still hold.

    python models/train/batch_axis.py models/vessels-s2.onnx models/trees-neon.onnx models/clouds-s2.onnx
"""

import sys

import yolo_layout

if __name__ == "__main__":
    for path in sys.argv[1:]:
        yolo_layout.with_batch_axis(path)
        print(f"rewrote {path}")
