#!/usr/bin/env python3
"""Writes the five dates of sentinel2-cloudy-clear (Sentinel-2 L1C top-of-atmosphere reflectance,
float32, from sentinel-hub/eo-learn's example data, MIT) as the band files a spacecraft's camera
would hand flight: for each date a folder of single-band uint16 GeoTIFFs (B02, B03, B04, B08, B11)
holding reflectance x 10000 (the Sentinel-2 L1C quantification, no offset), georeferenced in UTM
33N from bbox.geojson. Only the standard library, so that scripts/setup.sh runs it on a fresh
machine.

    scripts/cloudy_clear_bands.py SOURCE_FOLDER OUT_FOLDER
"""

import ast
import json
import os
import struct
import sys
from array import array

# band order in REFERENCE_SCENES.npy: B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B10 B11 B12
BANDS = {"B02": 1, "B03": 2, "B04": 3, "B08": 7, "B11": 11}
QUANTIFICATION = 10000.0
EPSG = 32633


def read_npy(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        raise SystemExit(f"{path}: not a .npy file")
    major = data[6]
    header_length, start = (struct.unpack("<H", data[8:10])[0], 10) if major == 1 else (struct.unpack("<I", data[8:12])[0], 12)
    header = ast.literal_eval(data[start : start + header_length].decode("latin1"))
    if header["descr"] != "<f4" or header["fortran_order"]:
        raise SystemExit(f"{path}: expected little-endian float32 in C order, found {header}")
    values = array("f")
    values.frombytes(data[start + header_length :])
    return values, header["shape"]


def tiff(width, height, samples, geotags):
    """A little-endian baseline TIFF of one uint16 band in one strip, with the GeoTIFF tags."""
    pixels = array("H", samples).tobytes()
    # (tag, type, count, value bytes): type 3 SHORT, 4 LONG, 12 DOUBLE
    entries = [
        (256, 4, 1, struct.pack("<I", width)),
        (257, 4, 1, struct.pack("<I", height)),
        (258, 3, 1, struct.pack("<H", 16)),
        (259, 3, 1, struct.pack("<H", 1)),
        (262, 3, 1, struct.pack("<H", 1)),
        (273, 4, 1, None),  # strip offset, filled in below
        (277, 3, 1, struct.pack("<H", 1)),
        (278, 4, 1, struct.pack("<I", height)),
        (279, 4, 1, struct.pack("<I", len(pixels))),
        (284, 3, 1, struct.pack("<H", 1)),
        (339, 3, 1, struct.pack("<H", 1)),
    ] + geotags
    ifd_size = 2 + 12 * len(entries) + 4
    extra_at = 8 + ifd_size
    extra = b""
    body = b""
    offsets = []
    for tag, kind, count, value in entries:
        if value is not None and len(value) > 4:
            offsets.append(extra_at + len(extra))
            extra += value
        else:
            offsets.append(None)
    strip_at = extra_at + len(extra)
    body += struct.pack("<H", len(entries))
    for (tag, kind, count, value), offset in zip(entries, offsets):
        if tag == 273:
            value = struct.pack("<I", strip_at)
        field = struct.pack("<I", offset) if offset is not None else value.ljust(4, b"\0")
        body += struct.pack("<HHI", tag, kind, count) + field
    body += struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", 8) + body + extra + pixels


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    source, out = sys.argv[1], sys.argv[2]
    values, (dates, height, width, bands) = read_npy(os.path.join(source, "REFERENCE_SCENES.npy"))
    with open(os.path.join(source, "bbox.geojson")) as f:
        ring = json.load(f)["coordinates"][0]
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    west, north = min(xs), max(ys)
    pixel = ((max(xs) - west) / width, (north - min(ys)) / height)
    geotags = [
        (33550, 12, 3, struct.pack("<3d", pixel[0], pixel[1], 0.0)),  # ModelPixelScale
        (33922, 12, 6, struct.pack("<6d", 0.0, 0.0, 0.0, west, north, 0.0)),  # ModelTiepoint: pixel (0, 0) corner
        # GeoKeyDirectory: projected model, pixel is area, projected CRS EPSG:32633
        (34735, 3, 16, struct.pack("<16H", 1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, EPSG)),
    ]
    for date in range(dates):
        folder = os.path.join(out, f"date-{date}")
        os.makedirs(folder, exist_ok=True)
        for name, band in BANDS.items():
            base = date * height * width * bands
            samples = [
                min(65535, max(0, round(values[base + (row * width + column) * bands + band] * QUANTIFICATION)))
                for row in range(height)
                for column in range(width)
            ]
            with open(os.path.join(folder, f"{name}.tif"), "wb") as f:
                f.write(tiff(width, height, samples, geotags))
    print(f"wrote {dates} dates of {', '.join(BANDS)} into {out}")


if __name__ == "__main__":
    main()
