"""Reference eclipse and pass times for the reference mission, from Skyfield (not our code).

Run by hand when mission.toml's orbit or stations change:
    python3 -m venv /tmp/skyvenv && /tmp/skyvenv/bin/pip install skyfield skyfield-data
    /tmp/skyvenv/bin/python thermal/reference/skyfield_reference.py mission.toml > thermal/reference/skyfield_events.json
thermal/tests/skyfield_agreement.rs compares the Rust model with the committed output.

Eclipse: Skyfield's is_sunlit (the line to the Sun's centre meets a spherical Earth of radius
6378136.6 m). Passes: EarthSatellite.find_events over each station's elevation mask (WGS84).
"""

import json
import sys
import tomllib

from skyfield.api import EarthSatellite, Loader, wgs84
from skyfield.searchlib import find_discrete
from skyfield_data import get_skyfield_data_path

DAYS = 3


def main(path):
    with open(path, "rb") as f:
        mission = tomllib.load(f)
    thermal = mission["thermal"]
    load = Loader(get_skyfield_data_path())
    ts = load.timescale(builtin=True)
    eph = load("de421.bsp")
    line1, line2 = thermal["tle"]
    sat = EarthSatellite(line1, line2, "reference", ts)
    t0 = sat.epoch
    t1 = ts.tt_jd(t0.tt + DAYS)

    def sunlit(t):
        return sat.at(t).is_sunlit(eph)

    sunlit.step_days = 60 / 86400
    times, values = find_discrete(t0, t1, sunlit)
    # Unix time from UTC: Skyfield's utc_datetime is the reference clock
    eclipses = [{"unix": round(t.utc_datetime().timestamp(), 3), "sunlit": bool(v)} for t, v in zip(times, values)]

    passes = []
    for station in thermal["ground_stations"]:
        topos = wgs84.latlon(station["latitude_deg"], station["longitude_deg"], elevation_m=station["altitude_m"])
        times, events = sat.find_events(topos, t0, t1, altitude_degrees=station["min_elevation_deg"])
        for t, e in zip(times, events):
            alt = (sat - topos).at(t).altaz()[0].degrees
            passes.append(
                {
                    "station": station["name"],
                    "event": ["aos", "culmination", "los"][int(e)],
                    "unix": round(t.utc_datetime().timestamp(), 3),
                    "elevation_deg": round(float(alt), 4),
                }
            )
    json.dump(
        {
            "generator": "skyfield " + __import__("skyfield").__version__ + ", de421.bsp from skyfield-data",
            "tle": [line1, line2],
            "start_unix": round(t0.utc_datetime().timestamp(), 3),
            "days": DAYS,
            "eclipse_transitions": eclipses,
            "passes": passes,
        },
        sys.stdout,
        indent=1,
    )


if __name__ == "__main__":
    main(sys.argv[1])
