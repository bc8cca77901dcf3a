//! Georeferencing: where a frame's pixels are on the Earth. From GeoTIFF tags (model tie point,
//! pixel scale, and the projected or geographic CRS in the GeoKey directory) to WGS84 latitude
//! and longitude. Supported: UTM north and south on WGS84 (EPSG 326xx, 327xx, via the `utm`
//! crate), Web Mercator (EPSG 3857), and plain WGS84 latitude/longitude (EPSG 4326).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use tiff::decoder::Decoder;
use tiff::tags::Tag;

/// Coordinate reference systems a frame may come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crs {
    Utm { zone: u8, north: bool },
    WebMercator,
    Geographic,
}

impl Crs {
    /// The CRS of an EPSG code, if supported.
    pub fn from_epsg(code: u16) -> Option<Self> {
        match code {
            32601..=32660 => Some(Self::Utm { zone: (code - 32600) as u8, north: true }),
            32701..=32760 => Some(Self::Utm { zone: (code - 32700) as u8, north: false }),
            3857 => Some(Self::WebMercator),
            4326 => Some(Self::Geographic),
            _ => None,
        }
    }
}

/// North-up affine georeferencing: pixel (column, row) → map (x, y).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoTransform {
    /// Map coordinates of the top-left corner of pixel (0, 0).
    pub origin: [f64; 2],
    /// Pixel size in map units (x to the east, y to the south: positive numbers).
    pub pixel_size: [f64; 2],
    pub crs: Crs,
}

#[derive(Debug, thiserror::Error)]
pub enum GeorefError {
    #[error("`{path}`: {message}")]
    Tiff { path: PathBuf, message: String },
    #[error("`{path}`: GeoTIFF CRS EPSG:{code} is not supported (UTM/WGS84, Web Mercator or WGS84 lat/lon)")]
    UnsupportedCrs { path: PathBuf, code: u16 },
    #[error("`{path}`: the GeoTIFF tags are incomplete: {message}")]
    Incomplete { path: PathBuf, message: String },
    #[error("pixel ({column}, {row}) is outside the projection's domain: {message}")]
    Projection { column: f64, row: f64, message: String },
}

const PROJECTED_CRS_KEY: u16 = 3072;
const GEOGRAPHIC_CRS_KEY: u16 = 2048;
/// Web Mercator's sphere radius, m.
const WEB_MERCATOR_RADIUS: f64 = 6_378_137.0;

impl GeoTransform {
    /// The georeferencing in a TIFF file's tags; `None` when the file has none (a plain TIFF).
    pub fn from_tiff(path: &Path) -> Result<Option<Self>, GeorefError> {
        let tiff_error = |message: String| GeorefError::Tiff { path: path.to_path_buf(), message };
        let file = File::open(path).map_err(|e| tiff_error(e.to_string()))?;
        let mut decoder = Decoder::new(BufReader::new(file)).map_err(|e| tiff_error(e.to_string()))?;
        let mut f64s = |tag: u16| -> Result<Option<Vec<f64>>, GeorefError> {
            match decoder.find_tag(Tag::Unknown(tag)).map_err(|e| tiff_error(e.to_string()))? {
                None => Ok(None),
                Some(value) => value.into_f64_vec().map(Some).map_err(|e| tiff_error(e.to_string())),
            }
        };
        let (Some(scale), Some(tiepoint)) = (f64s(33550)?, f64s(33922)?) else { return Ok(None) };
        let incomplete =
            |message: &str| GeorefError::Incomplete { path: path.to_path_buf(), message: message.to_owned() };
        if scale.len() < 2 || tiepoint.len() < 6 {
            return Err(incomplete("ModelPixelScale needs 2 values and ModelTiepoint 6"));
        }
        let keys = match decoder.find_tag(Tag::Unknown(34735)).map_err(|e| tiff_error(e.to_string()))? {
            Some(value) => value.into_u16_vec().map_err(|e| tiff_error(e.to_string()))?,
            None => return Err(incomplete("no GeoKeyDirectory")),
        };
        let key =
            |id: u16| keys.get(4..).unwrap_or(&[]).chunks_exact(4).find(|k| k[0] == id && k[1] == 0).map(|k| k[3]);
        let code =
            key(PROJECTED_CRS_KEY).or_else(|| key(GEOGRAPHIC_CRS_KEY)).ok_or_else(|| incomplete("no CRS GeoKey"))?;
        let crs = Crs::from_epsg(code).ok_or(GeorefError::UnsupportedCrs { path: path.to_path_buf(), code })?;
        // the tie point maps raster (i, j) to model (x, y)
        let origin = [tiepoint[3] - tiepoint[0] * scale[0], tiepoint[4] + tiepoint[1] * scale[1]];
        Ok(Some(Self { origin, pixel_size: [scale[0], scale[1]], crs }))
    }

    /// Map coordinates of a pixel position (fractional: 0.5 is a pixel's centre).
    pub fn map_xy(&self, column: f64, row: f64) -> (f64, f64) {
        (self.origin[0] + column * self.pixel_size[0], self.origin[1] - row * self.pixel_size[1])
    }

    /// WGS84 latitude and longitude (degrees) of a pixel position.
    pub fn lat_lon(&self, column: f64, row: f64) -> Result<(f64, f64), GeorefError> {
        let (x, y) = self.map_xy(column, row);
        match self.crs {
            Crs::Geographic => Ok((y, x)),
            Crs::WebMercator => {
                let lon = (x / WEB_MERCATOR_RADIUS).to_degrees();
                let lat = (2.0 * (y / WEB_MERCATOR_RADIUS).exp().atan() - std::f64::consts::FRAC_PI_2).to_degrees();
                Ok((lat, lon))
            }
            Crs::Utm { zone, north } => {
                // `utm` tells the hemisphere by the zone letter; any letter of the right half will do
                let letter = if north { 'N' } else { 'M' };
                utm::wsg84_utm_to_lat_lon(x, y, zone, letter).map_err(|e| GeorefError::Projection {
                    column,
                    row,
                    message: format!("{e:?}"),
                })
            }
        }
    }

    /// Corner coordinates (lat, lon) of a `width` x `height` raster: top-left, top-right,
    /// bottom-right, bottom-left.
    pub fn footprint(&self, width: u32, height: u32) -> Result<[[f64; 2]; 4], GeorefError> {
        let (w, h) = (f64::from(width), f64::from(height));
        let corner = |c: f64, r: f64| self.lat_lon(c, r).map(|(lat, lon)| [lat, lon]);
        Ok([corner(0.0, 0.0)?, corner(w, 0.0)?, corner(w, h)?, corner(0.0, h)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata").join(path)
    }

    #[test]
    fn the_neon_image_is_utm_17_north_in_florida() {
        let geo = GeoTransform::from_tiff(&testdata("aerial/OSBS_029.tif")).expect("tags").expect("georeferenced");
        assert_eq!(geo.crs, Crs::Utm { zone: 17, north: true });
        assert!((geo.pixel_size[0] - 0.1).abs() < 1e-9, "10 cm pixels: {:?}", geo.pixel_size);
        let (lat, lon) = geo.lat_lon(200.0, 200.0).expect("inside");
        // Ordway-Swisher Biological Station, Florida
        assert!((29.6..29.8).contains(&lat) && (-82.1..-81.9).contains(&lon), "{lat}, {lon}");
        // 40 m of image is 40 m on the ground
        let (lat2, _) = geo.lat_lon(200.0, 600.0).expect("inside");
        assert!(((lat - lat2) * 111_000.0 - 40.0).abs() < 1.0);
    }

    #[test]
    fn the_sentinel_2_port_is_web_mercator_in_casablanca() {
        let geo = GeoTransform::from_tiff(&crate::reference_data::expect("satellite/sen2ships/casablanca/B02.tif"))
            .expect("tags")
            .expect("geo");
        assert_eq!(geo.crs, Crs::WebMercator);
        let corners = geo.footprint(100, 100).expect("footprint");
        for [lat, lon] in corners {
            assert!((33.4..33.8).contains(&lat) && (-7.8..-7.4).contains(&lon), "{lat}, {lon}");
        }
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let garbage = dir.path().join("x.tif");
        std::fs::write(&garbage, b"II*\0garbage").expect("write");
        let error = GeoTransform::from_tiff(&garbage).expect_err("garbage");
        assert!(error.to_string().contains("x.tif"), "{error}");
    }
}
