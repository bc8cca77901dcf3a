//! The screens run before the detector. The cheap one: a tile whose every model band is flat (no
//! data, saturated, one uniform surface) carries nothing a detector could find, and is not run.
//! The cloud screen: a cloud-mask model gives each cell of a tile its probability of cloud, from
//! the tile's calibrated reflectance; a tile clouded over more than the mission allows is not run
//! through the detector either (a detector sees nothing through cloud, and its time is spent
//! better on clear tiles).

use crate::detect::{DetectError, run_model};
use crate::imagery::Raster;
use crate::model_io::Preprocess;
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

/// A cloud-mask model's session with what it needs to read a tile: each channel's reflectance
/// scaling and the probability above which a cell counts as cloud.
#[derive(Debug)]
pub struct CloudScreen {
    session: ort::session::Session,
    name: String,
    input_size: u32,
    /// The raster's bands the model takes, in order.
    bands: Vec<usize>,
    /// Each channel's samples at reflectance 0 and 1.
    reflectance: Vec<(f32, f32)>,
    cloud_probability: f32,
    max_cloud_fraction: f32,
}

/// What the cloud screen found in one tile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CloudCover {
    /// Share of the tile's cells whose cloud probability reaches the model's threshold.
    pub fraction: f32,
    /// Whether that is over the mission's limit: the tile is dropped from detection.
    pub over_limit: bool,
}

/// How a cloud screen is set up: the mission's limit and the camera's calibration, and the
/// manifest's input size, channels and per-cell threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudScreenSpec {
    pub name: String,
    pub input_size: u32,
    /// The frame's bands that feed the model's channels, in order.
    pub bands: Vec<usize>,
    pub cloud_probability: f32,
    pub max_cloud_fraction: f32,
    pub reflectance_scale: f32,
    pub reflectance_offset: f32,
}

impl CloudScreen {
    pub fn new(session: ort::session::Session, spec: CloudScreenSpec) -> Self {
        let full = (spec.reflectance_offset, spec.reflectance_offset + spec.reflectance_scale);
        Self {
            session,
            name: spec.name,
            input_size: spec.input_size,
            reflectance: vec![full; spec.bands.len()],
            bands: spec.bands,
            cloud_probability: spec.cloud_probability,
            max_cloud_fraction: spec.max_cloud_fraction,
        }
    }

    /// The cloud cover of one tile of `raster` (a frame as the mission detector reads it).
    pub fn cover(&mut self, raster: &Raster, window: Window) -> Result<CloudCover, DetectError> {
        // the tile in the corner: the cells over its own pixels are the first rows and columns
        let (tensor, placement) =
            raster.tile_tensor(window, &self.bands, &self.reflectance, self.input_size, &Preprocess::FLIGHT);
        let (scale, _) = placement.scale;
        let (shape, probabilities) = run_model(&mut self.session, &self.name, tensor)?;
        let refuse = |detail: &str| DetectError::Run {
            model: self.name.clone(),
            message: format!("its output is {shape:?}; a cloud mask gives [1, 1, rows, columns]{detail}"),
        };
        let [1, 1, rows, columns] = shape[..] else { return Err(refuse("")) };
        let (rows, columns) = (rows.max(0) as usize, columns.max(0) as usize);
        if rows == 0 || columns == 0 || probabilities.len() != rows * columns {
            return Err(refuse(&format!(" with one value a cell; found {} values", probabilities.len())));
        }
        // only the cells over the tile's own pixels count, not the letterbox's padding
        let input = self.input_size as f32;
        let covered = |pixels: u32, cells: usize| {
            ((pixels as f32 * scale / input * cells as f32).ceil() as usize).clamp(1, cells)
        };
        let (used_rows, used_columns) = (covered(window.height, rows), covered(window.width, columns));
        let cloudy = (0..used_rows)
            .flat_map(|r| probabilities[r * columns..r * columns + used_columns].iter())
            .filter(|&&p| p >= self.cloud_probability)
            .count();
        let fraction = cloudy as f32 / (used_rows * used_columns) as f32;
        Ok(CloudCover { fraction, over_limit: fraction > self.max_cloud_fraction })
    }
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
