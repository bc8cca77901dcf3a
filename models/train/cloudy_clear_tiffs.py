"""Writes the five dates of sentinel2-cloudy-clear (Sentinel-2 L1C TOA reflectance, float32, from
eo-learn's example data) as the band files a spacecraft's camera would give flight: for each date a
folder of single-band uint16 GeoTIFFs B02.tif, B03.tif, B11.tif holding reflectance x 10000 (the
Sentinel-2 L1C quantification, no offset), georeferenced in UTM 33N from bbox.geojson.

    /tmp/trainvenv/bin/python models/train/cloudy_clear_tiffs.py
"""

import json
import os

import numpy as np
import tifffile

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
DATA = os.path.join(ROOT, "testdata", "satellite", "sentinel2-cloudy-clear")
# band order in REFERENCE_SCENES.npy: B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B10 B11 B12
BANDS = {"B02": 1, "B03": 2, "B11": 11}
QUANTIFICATION = 10000.0
EPSG = 32633


def main():
    scenes = np.load(os.path.join(DATA, "REFERENCE_SCENES.npy"))  # date, H, W, band
    with open(os.path.join(DATA, "bbox.geojson")) as f:
        ring = np.array(json.load(f)["coordinates"][0])
    _, height, width, _ = scenes.shape
    west, north = ring[:, 0].min(), ring[:, 1].max()
    pixel = ((ring[:, 0].max() - west) / width, (north - ring[:, 1].min()) / height)
    geotags = [
        (33550, "d", 3, (pixel[0], pixel[1], 0.0), True),  # ModelPixelScale
        (33922, "d", 6, (0.0, 0.0, 0.0, west, north, 0.0), True),  # ModelTiepoint: pixel (0, 0) corner
        # GeoKeyDirectory: projected model, pixel is area, projected CRS EPSG:32633
        (34735, "H", 16, (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, EPSG), True),
    ]
    for date in range(scenes.shape[0]):
        folder = os.path.join(DATA, f"date-{date}")
        os.makedirs(folder, exist_ok=True)
        for name, index in BANDS.items():
            dn = np.clip(np.round(scenes[date, :, :, index] * QUANTIFICATION), 0, 65535).astype(np.uint16)
            tifffile.imwrite(os.path.join(folder, f"{name}.tif"), dn, extratags=geotags)
    print(f"wrote {scenes.shape[0]} dates of {', '.join(BANDS)} into {DATA}")


if __name__ == "__main__":
    main()
