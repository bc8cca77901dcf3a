//! The Sun as seen from the Earth, and how much of it a satellite sees past the Earth.

use crate::orbit::{Vec3, dot, julian_date, norm, sub};

/// Astronomical unit, km.
pub const AU_KM: f64 = 149_597_870.7;
/// Solar radius, km.
pub const SUN_RADIUS_KM: f64 = 696_000.0;
/// The sphere that casts the shadow (Skyfield's ERAD, so that events compare like for like).
pub const SHADOW_EARTH_RADIUS_KM: f64 = 6378.1366;

/// Geocentric Sun position (km) in a true-of-date equatorial frame (TEME to within arcseconds),
/// by the Astronomical Almanac's low-precision formulae (about 0.01 degrees).
pub fn position(t_unix: f64) -> Vec3 {
    let n = julian_date(t_unix) - 2_451_545.0;
    let mean_longitude = (280.460 + 0.985_647_4 * n).to_radians();
    let g = (357.528 + 0.985_600_3 * n).to_radians();
    let longitude = mean_longitude + (1.915 * g.sin() + 0.020 * (2.0 * g).sin()).to_radians();
    let obliquity = (23.439 - 0.000_000_4 * n).to_radians();
    let distance = (1.000_14 - 0.016_71 * g.cos() - 0.000_14 * (2.0 * g).cos()) * AU_KM;
    [
        distance * longitude.cos(),
        distance * obliquity.cos() * longitude.sin(),
        distance * obliquity.sin() * longitude.sin(),
    ]
}

/// Whether the line from the satellite to the Sun's centre clears the Earth (Skyfield's
/// `is_sunlit` definition).
pub fn centre_visible(satellite: Vec3, sun: Vec3) -> bool {
    let d = sub(sun, satellite);
    let length = norm(d);
    let u = [d[0] / length, d[1] / length, d[2] / length];
    // closest approach of the ray to the Earth's centre
    let along = -dot(satellite, u);
    if along <= 0.0 {
        return true;
    }
    let closest = [satellite[0] + along * u[0], satellite[1] + along * u[1], satellite[2] + along * u[2]];
    norm(closest) > SHADOW_EARTH_RADIUS_KM
}

/// Fraction of the solar disc visible from the satellite (conical shadow with penumbra): 1 in
/// sunlight, 0 in the umbra, between in the penumbra.
pub fn illumination(satellite: Vec3, sun: Vec3) -> f64 {
    let to_sun = sub(sun, satellite);
    let to_earth = [-satellite[0], -satellite[1], -satellite[2]];
    let a = (SUN_RADIUS_KM / norm(to_sun)).asin();
    let b = (SHADOW_EARTH_RADIUS_KM / norm(to_earth)).asin();
    let c = (dot(to_sun, to_earth) / (norm(to_sun) * norm(to_earth))).clamp(-1.0, 1.0).acos();
    if c >= a + b {
        return 1.0;
    }
    if c <= b - a {
        return 0.0;
    }
    // area of the lens where the two discs overlap, over the Sun's disc
    let x = (c * c + a * a - b * b) / (2.0 * c);
    let y = (a * a - x * x).max(0.0).sqrt();
    let overlap = a * a * (x / a).clamp(-1.0, 1.0).acos() + b * b * ((c - x) / b).clamp(-1.0, 1.0).acos() - c * y;
    (1.0 - overlap / (std::f64::consts::PI * a * a)).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sun_is_on_the_equator_at_the_march_equinox() {
        // 2026-03-20 14:46 UTC, the equinox
        let sun = position(1_774_017_960.0);
        let declination = (sun[2] / norm(sun)).asin().to_degrees();
        assert!(declination.abs() < 0.02, "declination {declination}");
        assert!((norm(sun) / AU_KM - 0.996).abs() < 0.002);
    }

    #[test]
    fn shadow_geometry() {
        let sun = [AU_KM, 0.0, 0.0];
        assert_eq!(illumination([7000.0, 0.0, 0.0], sun), 1.0);
        assert_eq!(illumination([-7000.0, 0.0, 0.0], sun), 0.0);
        assert!(centre_visible([0.0, 7000.0, 0.0], sun));
        assert!(!centre_visible([-7000.0, 100.0, 0.0], sun));
        // at the shadow's edge, about half the disc shows
        let edge = illumination([-7000.0, SHADOW_EARTH_RADIUS_KM, 0.0], sun);
        assert!((0.3..0.7).contains(&edge), "{edge}");
    }
}
