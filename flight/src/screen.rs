//! The cheap screen run before the detector: a tile whose every model band is flat (no data,
//! saturated, one uniform surface) carries nothing a detector could find, and is not run.

use crate::imagery::Raster;
use crate::tile::Window;

/// A band varying by less than this share of its scene range counts as flat.
const FLAT_SHARE: f32 = 0.01;

/// Whether the tile carries nothing: every band in `bands` spans less than 1% of its `ranges`.
pub fn carries_nothing(raster: &Raster, window: Window, bands: &[usize], ranges: &[(f32, f32)]) -> bool {
    bands.iter().zip(ranges).all(|(&band, &(low, high))| {
        let (mut min, mut max) = (u16::MAX, u16::MIN);
        for y in window.y..window.y + window.height {
            let row = (y as usize) * (raster.width as usize);
            for x in window.x..window.x + window.width {
                let value = raster.sample((row + x as usize) * raster.bands + band);
                min = min.min(value);
                max = max.max(value);
            }
        }
        f32::from(max.saturating_sub(min)) < FLAT_SHARE * (high - low).max(1.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imagery::Samples;

    #[test]
    fn flat_tiles_carry_nothing_and_one_bright_pixel_is_something() {
        let mut samples = vec![100u16; 64 * 64];
        let raster = |samples: Vec<u16>| Raster { width: 64, height: 64, bands: 1, samples: Samples::U16(samples) };
        let window = Window { x: 0, y: 0, width: 32, height: 32 };
        let ranges = [(0.0, 10_000.0)];
        assert!(carries_nothing(&raster(samples.clone()), window, &[0], &ranges));
        samples[5 * 64 + 5] = 3000;
        assert!(!carries_nothing(&raster(samples.clone()), window, &[0], &ranges));
        // the bright pixel is outside this tile
        assert!(carries_nothing(&raster(samples), Window { x: 32, y: 32, width: 32, height: 32 }, &[0], &ranges));
    }
}
