//! Reading frames: PNG and (Geo)TIFF, 8 or 16 bit, one or more bands, or a scene given as one file
//! per band; and turning a tile of it into the model's input tensor. The raster stays in its
//! integer type: only one tile at a time is ever made into floats, so memory is bounded by the
//! frame's own size plus a few tiles, never by a float copy of the frame.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use ndarray::Array4;
use tiff::decoder::{Decoder, DecodingResult, Limits};

use crate::model_io::{Placement, Preprocess, Resize};
use crate::resize::Resizer;
use crate::tile::Window;

/// Pixel values, band-interleaved: sample (x, y, b) is at `(y * width + x) * bands + b`.
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Raster {
    pub width: u32,
    pub height: u32,
    pub bands: usize,
    pub samples: Samples,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("`{path}`: {message}")]
    Read { path: PathBuf, message: String },
    #[error("`{path}`: {width}x{height} does not match the first band's {expected_width}x{expected_height}")]
    BandSize { path: PathBuf, width: u32, height: u32, expected_width: u32, expected_height: u32 },
    #[error("`{path}`: {found} bands, but band {wanted} was asked for (bands count from 0)")]
    Band { path: PathBuf, found: usize, wanted: usize },
    #[error("`{path}`: {message} is not supported (8 or 16-bit unsigned integer samples are)")]
    SampleType { path: PathBuf, message: String },
}

/// Largest frame accepted, in samples: a hostile header cannot make us allocate more.
pub const MAX_SAMPLES: u64 = 16 * 10_000 * 10_000;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn open_tiff(path: &Path) -> Result<Decoder<BufReader<File>>, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut limits = Limits::default();
    limits.decoding_buffer_size = (MAX_SAMPLES * 2) as usize;
    Ok(Decoder::new(BufReader::new(file)).map_err(|e| e.to_string())?.with_limits(limits))
}

/// A TIFF of full-width strips of 8 or 16-bit unsigned samples, pixel-interleaved: the layout
/// whose strips can be inflated on several threads, each into its own rows. (Anything else is
/// read whole, by `tiff`.)
#[derive(Debug, Clone, Copy)]
struct StripLayout {
    strips: u32,
    /// Bytes of one strip but perhaps the last (which may have fewer rows).
    strip_bytes: usize,
    samples: usize,
    samples_per_pixel: usize,
    sixteen_bit: bool,
}

impl StripLayout {
    fn of(decoder: &mut Decoder<BufReader<File>>, width: u32, height: u32) -> Option<Self> {
        if decoder.get_chunk_type() != tiff::decoder::ChunkType::Strip {
            return None;
        }
        let strips = decoder.strip_count().ok().filter(|&strips| strips > 1)?;
        let chunky =
            decoder.find_tag_unsigned::<u16>(tiff::tags::Tag::PlanarConfiguration).ok()?.is_none_or(|c| c == 1);
        let unsigned = decoder
            .find_tag_unsigned_vec::<u16>(tiff::tags::Tag::SampleFormat)
            .ok()?
            .is_none_or(|formats| formats.iter().all(|&f| f == 1));
        let colour = decoder.colortype().ok()?;
        let bits = colour.bit_depth();
        if !chunky || !unsigned || !(bits == 8 || bits == 16) {
            return None;
        }
        let samples_per_pixel = usize::from(colour.num_samples());
        let samples = u64::from(width) * u64::from(height) * samples_per_pixel as u64;
        if samples == 0 || samples > MAX_SAMPLES {
            return None;
        }
        // a file whose strips do not tile its rows exactly is left to `tiff` (and its errors)
        let rows_per_strip = decoder.chunk_dimensions().1.min(height);
        if rows_per_strip == 0 || height.div_ceil(rows_per_strip) != strips {
            return None;
        }
        let strip_bytes = rows_per_strip as usize * width as usize * samples_per_pixel * usize::from(bits / 8);
        Some(Self { strips, strip_bytes, samples: samples as usize, samples_per_pixel, sixteen_bit: bits == 16 })
    }

    /// Inflates the strips on up to `threads` threads into the rows of one buffer: the calling
    /// thread with `decoder`, each other thread with a decoder of its own over the file.
    fn read_in_parallel(
        &self,
        mut decoder: Decoder<BufReader<File>>,
        path: &Path,
        threads: usize,
    ) -> Result<Samples, String> {
        let mut samples =
            if self.sixteen_bit { Samples::U16(vec![0; self.samples]) } else { Samples::U8(vec![0; self.samples]) };
        let bytes: &mut [u8] = match &mut samples {
            Samples::U8(v) => v,
            Samples::U16(v) => bytemuck::cast_slice_mut(v),
        };
        let threads = threads.clamp(1, self.strips as usize);
        let mut shares: Vec<Vec<(u32, &mut [u8])>> = (0..threads).map(|_| Vec::new()).collect();
        for (index, rows) in bytes.chunks_mut(self.strip_bytes).enumerate() {
            shares[index % threads].push((index as u32, rows));
        }
        let own = shares.swap_remove(0);
        std::thread::scope(|scope| {
            let readers: Vec<_> = shares
                .into_iter()
                .map(|share| scope.spawn(move || read_strips(&mut open_tiff(path)?, share)))
                .collect();
            read_strips(&mut decoder, own)?;
            readers
                .into_iter()
                .try_for_each(|reader| reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
        })?;
        Ok(samples)
    }
}

/// Inflates each `(strip, rows)` of `share` into its rows.
fn read_strips(decoder: &mut Decoder<BufReader<File>>, share: Vec<(u32, &mut [u8])>) -> Result<(), String> {
    for (index, rows) in share {
        decoder.read_chunk_bytes(index, rows).map_err(|e| format!("strip {index}: {e}"))?;
    }
    Ok(())
}

impl Raster {
    /// Reads a PNG or a TIFF (by its first bytes, not its name), a striped TIFF on every core.
    pub fn read(path: &Path) -> Result<Self, ImageError> {
        Self::read_on(path, cores())
    }

    /// As `read`, a striped TIFF's strips inflated on up to `threads` threads.
    fn read_on(path: &Path, threads: usize) -> Result<Self, ImageError> {
        let read_error = |message: String| ImageError::Read { path: path.to_path_buf(), message };
        let mut magic = [0u8; 4];
        {
            use std::io::Read;
            File::open(path).and_then(|mut f| f.read_exact(&mut magic)).map_err(|e| read_error(e.to_string()))?;
        }
        if &magic[..2] == b"II" || &magic[..2] == b"MM" {
            Self::read_tiff(path, threads)
        } else {
            Self::read_with_image(path)
        }
    }

    fn read_tiff(path: &Path, threads: usize) -> Result<Self, ImageError> {
        let read_error = |message: String| ImageError::Read { path: path.to_path_buf(), message };
        let mut decoder = open_tiff(path).map_err(read_error)?;
        let (width, height) = decoder.dimensions().map_err(|e| read_error(e.to_string()))?;
        if let Some(strips) = StripLayout::of(&mut decoder, width, height) {
            let samples = strips.read_in_parallel(decoder, path, threads).map_err(read_error)?;
            return Ok(Self { width, height, bands: strips.samples_per_pixel, samples });
        }
        let pixels = u64::from(width) * u64::from(height);
        let samples = match decoder.read_image().map_err(|e| read_error(e.to_string()))? {
            DecodingResult::U8(v) => Samples::U8(v),
            DecodingResult::U16(v) => Samples::U16(v),
            other => {
                let message = match other {
                    DecodingResult::F32(_) | DecodingResult::F64(_) => "floating-point samples",
                    DecodingResult::U32(_) | DecodingResult::U64(_) => "32 or 64-bit integer samples",
                    _ => "signed integer samples",
                };
                return Err(ImageError::SampleType { path: path.to_path_buf(), message: message.into() });
            }
        };
        let count = match &samples {
            Samples::U8(v) => v.len(),
            Samples::U16(v) => v.len(),
        } as u64;
        if pixels == 0 || !count.is_multiple_of(pixels) {
            return Err(read_error(format!("{count} samples for {width}x{height} pixels")));
        }
        Ok(Self { width, height, bands: (count / pixels) as usize, samples })
    }

    fn read_with_image(path: &Path) -> Result<Self, ImageError> {
        let read_error = |message: String| ImageError::Read { path: path.to_path_buf(), message };
        let mut reader = image::ImageReader::open(path).map_err(|e| read_error(e.to_string()))?;
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(MAX_SAMPLES * 2);
        reader.limits(limits);
        let image = reader
            .with_guessed_format()
            .map_err(|e| read_error(e.to_string()))?
            .decode()
            .map_err(|e| read_error(e.to_string()))?;
        let (width, height) = (image.width(), image.height());
        let bands = usize::from(image.color().channel_count());
        let samples = if image.color().bytes_per_pixel() / image.color().channel_count() == 1 {
            Samples::U8(image.into_bytes())
        } else {
            Samples::U16(match bands {
                1 => image.into_luma16().into_raw(),
                2 => image.into_luma_alpha16().into_raw(),
                3 => image.into_rgb16().into_raw(),
                _ => image.into_rgba16().into_raw(),
            })
        };
        Ok(Self { width, height, bands, samples })
    }

    /// A scene given as one single-band file per band, stacked in the order given.
    pub fn read_bands(paths: &[PathBuf]) -> Result<Self, ImageError> {
        // each file on a thread of its own, the cores shared out between them (no more threads
        // than cores): inflating the deflate strips is most of a frame's reading, and where the
        // detector runs on a GPU the reading is what bounds the path
        let threads_per_file = (cores() / paths.len().max(1)).max(1);
        let read: Vec<_> = std::thread::scope(|scope| {
            let readers: Vec<_> =
                paths.iter().map(|path| scope.spawn(move || Self::read_on(path, threads_per_file))).collect();
            readers
                .into_iter()
                .map(|reader| reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect()
        });
        let mut layers = Vec::with_capacity(paths.len());
        for (path, layer) in paths.iter().zip(read) {
            let layer = layer?;
            if layer.bands != 1 {
                return Err(ImageError::Read {
                    path: path.clone(),
                    message: format!("{} bands where one was expected", layer.bands),
                });
            }
            if let Some(first) = layers.first().map(|l: &Raster| (l.width, l.height))
                && first != (layer.width, layer.height)
            {
                return Err(ImageError::BandSize {
                    path: path.clone(),
                    width: layer.width,
                    height: layer.height,
                    expected_width: first.0,
                    expected_height: first.1,
                });
            }
            layers.push(layer);
        }
        let Some(first) = layers.first() else {
            return Err(ImageError::Read {
                path: PathBuf::from("(no band files)"),
                message: "no band files given".into(),
            });
        };
        let (width, height, bands) = (first.width, first.height, layers.len());
        let pixels = (width as usize) * (height as usize);
        let mut out = vec![0u16; pixels * bands];
        for (b, layer) in layers.iter().enumerate() {
            let band = out.iter_mut().skip(b).step_by(bands);
            match &layer.samples {
                Samples::U8(v) => band.zip(v).for_each(|(o, &s)| *o = u16::from(s)),
                Samples::U16(v) => band.zip(v).for_each(|(o, &s)| *o = s),
            }
        }
        Ok(Self { width, height, bands, samples: Samples::U16(out) })
    }

    /// CRC-32 of the samples: taken when a frame is loaded and checked before its products are
    /// made, so that an upset in the image buffer in between is caught.
    pub fn crc32(&self) -> u32 {
        let mut digest = crc32fast::Hasher::new();
        match &self.samples {
            Samples::U8(v) => digest.update(v),
            Samples::U16(v) => {
                let mut bytes = [0u8; 8192];
                for chunk in v.chunks(bytes.len() / 2) {
                    for (pair, sample) in bytes.chunks_exact_mut(2).zip(chunk) {
                        pair.copy_from_slice(&sample.to_le_bytes());
                    }
                    digest.update(&bytes[..chunk.len() * 2]);
                }
            }
        }
        digest.finalize()
    }

    /// Where the samples are in memory: (address, bytes), for the fault injector's map.
    pub fn memory(&self) -> (usize, usize) {
        match &self.samples {
            Samples::U8(v) => (v.as_ptr() as usize, v.len()),
            Samples::U16(v) => (v.as_ptr() as usize, v.len() * 2),
        }
    }

    /// Sample `index` of the band-interleaved buffer, widened to u16.
    pub fn sample(&self, index: usize) -> u16 {
        match &self.samples {
            Samples::U8(v) => u16::from(v[index]),
            Samples::U16(v) => v[index],
        }
    }

    /// Checks that every band in `bands` exists.
    pub fn check_bands(&self, path: &Path, bands: &[usize]) -> Result<(), ImageError> {
        match bands.iter().find(|&&b| b >= self.bands) {
            Some(&wanted) => Err(ImageError::Band { path: path.to_path_buf(), found: self.bands, wanted }),
            None => Ok(()),
        }
    }

    /// The `low`..`high` quantiles of a band (sampled on a grid of about 65,536 pixels), for the
    /// per-scene normalisation scenes with different scalings need.
    pub fn band_range(&self, band: usize, low: f64, high: f64) -> (f32, f32) {
        let pixels = (self.width as usize) * (self.height as usize);
        let step = (pixels / 65_536).max(1);
        let mut values: Vec<u16> = (0..pixels).step_by(step).map(|p| self.sample(p * self.bands + band)).collect();
        let rank = |q: f64| ((values.len() - 1) as f64 * q).round() as usize;
        let (low, high) = (rank(low), rank(high));
        // two selections, not a sort: the quantiles are all that is wanted
        let (below, &mut high_value, _) = values.select_nth_unstable(high);
        let low_value = if low < high { *below.select_nth_unstable(low).1 } else { high_value };
        (f32::from(low_value), f32::from(high_value))
    }

    /// The model input for one tile: `[1, bands, height, width]` (the model's square, or less
    /// where `preprocess` trims the padding to a stride), each chosen band scaled from its
    /// `(low, high)` range to 0..1 (clamped), the tile letterboxed as `preprocess` says (resized
    /// to fit, and padded). Returns the tensor and where the tile landed in it.
    pub fn tile_tensor(
        &self,
        window: Window,
        bands: &[usize],
        ranges: &[(f32, f32)],
        size: u32,
        preprocess: &Preprocess,
    ) -> (Array4<f32>, Placement) {
        let placement = Placement::of(window.width, window.height, size, preprocess);
        let (width, height) = placement.input;
        let mut tensor = Array4::<f32>::zeros((1, bands.len(), height, width));
        // a fresh array is in standard layout, so it is one slice
        let out = tensor.as_slice_mut().unwrap_or_default();
        self.tile_into(window, bands, ranges, size, preprocess, out);
        (tensor, placement)
    }

    /// As [`Raster::tile_tensor`], into `out`: one tile's `bands * height * width` values (a
    /// tile's place in a batch). Returns the placement; `out` of another length is left as it is.
    pub fn tile_into(
        &self,
        window: Window,
        bands: &[usize],
        ranges: &[(f32, f32)],
        size: u32,
        preprocess: &Preprocess,
        out: &mut [f32],
    ) -> Placement {
        let placement = Placement::of(window.width, window.height, size, preprocess);
        let (width, height) = placement.input;
        if out.len() != bands.len() * width * height {
            return placement;
        }
        out.fill(preprocess.pad);
        let (out_w, out_h) = placement.extent;
        let (left, top) = (placement.offset.0 as usize, placement.offset.1 as usize);
        let scaling: Vec<(f32, f32)> =
            ranges.iter().map(|&(low, high)| (low, 1.0 / (high - low).max(f32::EPSILON))).collect();
        let plane = width * height;
        let unscaled = out_w == window.width as usize && out_h == window.height as usize;
        if unscaled || preprocess.resize == Resize::Nearest {
            let (scale_x, scale_y) = (out_w as f32 / window.width as f32, out_h as f32 / window.height as f32);
            // the source column of each output column, as a sample offset within a row
            let columns: Vec<usize> = (0..out_w)
                .map(|ox| {
                    let x = (window.x + ((ox as f32 + 0.5) / scale_x) as u32).min(window.x + window.width - 1);
                    x as usize * self.bands
                })
                .collect();
            for oy in 0..out_h {
                let y = (window.y + ((oy as f32 + 0.5) / scale_y) as u32).min(window.y + window.height - 1);
                let row = y as usize * self.width as usize * self.bands;
                for (c, (&band, &(low, inverse))) in bands.iter().zip(&scaling).enumerate() {
                    let at = c * plane + (top + oy) * width + left;
                    let target = &mut out[at..at + out_w];
                    let normalise = |value: u16| ((f32::from(value) - low) * inverse).clamp(0.0, 1.0);
                    let start = row + columns.first().copied().unwrap_or(0) + band;
                    // a tile at the model's own size reads each row's samples in order: stepping
                    // through them, rather than through `columns`, lets the compiler vectorise
                    match &self.samples {
                        Samples::U8(v) if unscaled => {
                            let source = v[start..].iter().step_by(self.bands);
                            target.iter_mut().zip(source).for_each(|(t, &value)| *t = normalise(u16::from(value)));
                        }
                        Samples::U16(v) if unscaled => {
                            let source = v[start..].iter().step_by(self.bands);
                            target.iter_mut().zip(source).for_each(|(t, &value)| *t = normalise(value));
                        }
                        _ => {
                            for (t, &x) in target.iter_mut().zip(&columns) {
                                *t = normalise(self.sample(row + x + band));
                            }
                        }
                    }
                }
            }
            return placement;
        }
        // resized as OpenCV resizes an image of these samples, then scaled: the numbers a model
        // trained on OpenCV-resized images saw
        let resizer = Resizer::new(window.width as usize, window.height as usize, out_w, out_h);
        let stride = self.width as usize * self.bands;
        let origin = window.y as usize * stride + window.x as usize * self.bands;
        for (c, (&band, &(low, inverse))) in bands.iter().zip(&scaling).enumerate() {
            let at = |x: usize, y: usize| origin + y * stride + x * self.bands + band;
            let target = &mut out[c * plane..(c + 1) * plane];
            let put = |x: usize, y: usize, value: f32| {
                target[(top + y) * width + left + x] = ((value - low) * inverse).clamp(0.0, 1.0);
            };
            match &self.samples {
                Samples::U8(v) => resizer.resize_u8(|y, x| v[at(x, y)], put),
                Samples::U16(v) => resizer.resize_u16(|y, x| v[at(x, y)], put),
            }
        }
        placement
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_io::Letterbox;

    fn testdata(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata").join(path)
    }

    #[test]
    fn strips_inflated_in_parallel_are_the_image_tiff_reads_whole() {
        for file in
            ["satellite/sen2ships/casablanca/B02.tif", "satellite/sen2ships/busan/B11.tif", "aerial/OSBS_029.tif"]
        {
            let path =
                if file.starts_with("satellite/") { crate::reference_data::expect(file) } else { testdata(file) };
            let mut decoder = open_tiff(&path).expect("a TIFF");
            let (width, height) = decoder.dimensions().expect("dimensions");
            let Some(strips) = StripLayout::of(&mut decoder, width, height) else {
                assert_ne!(file, "satellite/sen2ships/casablanca/B02.tif", "the band files are in strips");
                continue;
            };
            let whole = match open_tiff(&path).and_then(|mut d| d.read_image().map_err(|e| e.to_string())) {
                Ok(DecodingResult::U8(v)) => Samples::U8(v),
                Ok(DecodingResult::U16(v)) => Samples::U16(v),
                _ => panic!("{file}: not read whole as 8 or 16 bit"),
            };
            for threads in [1, 3] {
                let parallel = strips.read_in_parallel(open_tiff(&path).expect("a TIFF"), &path, threads);
                assert_eq!(parallel.expect("in parallel"), whole, "{file}, {threads} threads");
            }
        }
    }

    #[test]
    fn reads_an_8_bit_rgb_geotiff_and_16_bit_band_files() {
        let neon = Raster::read(&testdata("aerial/OSBS_029.tif")).expect("NEON tile");
        assert_eq!((neon.width, neon.height, neon.bands), (400, 400, 3));
        assert!(matches!(neon.samples, Samples::U8(_)));

        let dir = crate::reference_data::expect("satellite/sen2ships/casablanca");
        let bands: Vec<PathBuf> =
            ["B02", "B03", "B04", "B08", "B11"].iter().map(|b| dir.join(format!("{b}.tif"))).collect();
        let scene = Raster::read_bands(&bands).expect("band files");
        assert_eq!(scene.bands, 5);
        let png = Raster::read(&dir.join("2023-04-26_SH_Casablanca_True_color.png")).expect("png");
        assert_eq!((png.width, png.height), (scene.width, scene.height), "same pixel grid");
        let (low, high) = scene.band_range(3, 0.02, 0.98);
        assert!(low < high, "{low} {high}");
    }

    #[test]
    fn the_image_crc_is_the_crc_32_of_the_samples_little_endian_across_chunks() {
        let samples: Vec<u16> = (0..10_001u32).map(|i| (i * 7919 % 65_536) as u16).collect();
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let raster = Raster { width: 10_001, height: 1, bands: 1, samples: Samples::U16(samples) };
        assert_eq!(raster.crc32(), crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&bytes));
    }

    #[test]
    fn tiles_become_letterboxed_normalised_tensors() {
        let neon = Raster::read(&testdata("aerial/OSBS_029.tif")).expect("NEON tile");
        let window = Window { x: 0, y: 0, width: 400, height: 200 };
        let (tensor, placement) = neon.tile_tensor(window, &[0, 1, 2], &[(0.0, 255.0); 3], 320, &Preprocess::FLIGHT);
        assert_eq!(tensor.shape(), &[1, 3, 320, 320]);
        assert!((placement.scale.0 - 0.8).abs() < 1e-6 && placement.scale.0 == placement.scale.1);
        assert!(tensor.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(tensor[[0, 0, 300, 10]], 0.5, "below the letterboxed tile: padding");
        // Ultralytics' letterbox: the tile in the middle, 80 rows of 114/255 above and below
        let (tensor, placement) =
            neon.tile_tensor(window, &[0, 1, 2], &[(0.0, 255.0); 3], 320, &Preprocess::ULTRALYTICS);
        assert_eq!(placement.offset, (0.0, 80.0));
        assert_eq!((tensor[[0, 0, 10, 10]], tensor[[0, 0, 310, 10]]), (114.0 / 255.0, 114.0 / 255.0));
        assert_ne!(tensor[[0, 0, 160, 10]], 114.0 / 255.0, "the tile's own pixels in the middle");
    }

    #[test]
    fn a_tile_resized_bilinearly_interpolates_between_the_samples_around_each_pixel() {
        // a horizontal ramp 0, 10, 20, 30 doubled to 8 pixels: OpenCV's INTER_LINEAR gives
        // 0, 2, 7, 12, 17, 22, 27, 30 (edges clamped, halves rounded down by its fixed point)
        let ramp =
            Raster { width: 4, height: 4, bands: 1, samples: Samples::U8((0..16).map(|i| (i % 4) * 10).collect()) };
        let window = Window { x: 0, y: 0, width: 4, height: 4 };
        let bilinear = Preprocess { input_range: None, ..Preprocess::FLIGHT };
        let (tensor, _) = ramp.tile_tensor(window, &[0], &[(0.0, 100.0)], 8, &bilinear);
        let row: Vec<f32> = (0..8).map(|x| (tensor[[0, 0, 3, x]] * 100.0 * 1000.0).round() / 1000.0).collect();
        assert_eq!(row, vec![0.0, 2.0, 7.0, 12.0, 17.0, 22.0, 27.0, 30.0]);
        let nearest = Preprocess { resize: Resize::Nearest, ..Preprocess::FLIGHT };
        let (tensor, _) = ramp.tile_tensor(window, &[0], &[(0.0, 100.0)], 8, &nearest);
        let row: Vec<f32> = (0..8).map(|x| (tensor[[0, 0, 3, x]] * 100.0).round()).collect();
        assert_eq!(row, vec![0.0, 0.0, 10.0, 10.0, 20.0, 20.0, 30.0, 30.0]);
    }

    #[test]
    fn a_trimmed_letterbox_and_a_stretch_give_the_inputs_ultralytics_gives() {
        let raster = Raster { width: 300, height: 250, bands: 1, samples: Samples::U8(vec![50; 300 * 250]) };
        let window = Window { x: 0, y: 0, width: 300, height: 250 };
        // a model with a free height and width: 640 x 533 resized, padded to 544 (a multiple of 32)
        let trimmed = Preprocess { stride: Some(32), ..Preprocess::ULTRALYTICS };
        let (tensor, placement) = raster.tile_tensor(window, &[0], &[(0.0, 255.0)], 640, &trimmed);
        assert_eq!(
            (tensor.shape(), placement.extent, placement.offset),
            (&[1, 1, 544, 640][..], (640, 533), (0.0, 5.0))
        );
        assert_eq!(
            (tensor[[0, 0, 4, 0]], tensor[[0, 0, 5, 0]], tensor[[0, 0, 538, 0]]),
            (114.0 / 255.0, 50.0 * (1.0 / 255.0), 114.0 / 255.0)
        );
        // RT-DETR's: the whole square, each axis its own scale
        let stretch = Preprocess { letterbox: Letterbox::Stretch, ..Preprocess::ULTRALYTICS };
        let (tensor, placement) = raster.tile_tensor(window, &[0], &[(0.0, 255.0)], 640, &stretch);
        assert_eq!((tensor.shape(), placement.offset), (&[1, 1, 640, 640][..], (0.0, 0.0)));
        assert_eq!(placement.scale, (640.0 / 300.0, 640.0 / 250.0));
        assert!(tensor.iter().all(|v| *v == 50.0 * (1.0 / 255.0)), "no padding");
        let back = placement.to_tile([640.0, 320.0, 640.0, 640.0]);
        assert!(back.iter().zip([300.0, 125.0, 300.0, 250.0]).all(|(a, b)| (a - b).abs() < 1e-3), "{back:?}");
    }

    #[test]
    fn a_tile_at_the_models_size_holds_each_chosen_band_scaled_in_place() {
        let (width, height, bands) = (70u32, 50u32, 4usize);
        let values = |i: usize| (i * 7919 % 4099) as u16;
        let count = width as usize * height as usize * bands;
        let wide = Raster { width, height, bands, samples: Samples::U16((0..count).map(values).collect()) };
        let narrow =
            Raster { width, height, bands, samples: Samples::U8((0..count).map(|i| values(i) as u8).collect()) };
        let window = Window { x: 13, y: 9, width: 32, height: 32 };
        let (chosen, ranges) = ([3, 0, 2], [(100.0, 3000.0), (0.0, 4000.0), (50.0, 200.0)]);
        for raster in [wide, narrow] {
            let (tensor, placement) = raster.tile_tensor(window, &chosen, &ranges, 32, &Preprocess::ULTRALYTICS);
            assert_eq!((placement.scale, placement.offset), ((1.0, 1.0), (0.0, 0.0)));
            for (c, (&band, &(low, high))) in chosen.iter().zip(&ranges).enumerate() {
                for (y, x) in [(0, 0), (0, 31), (17, 5), (31, 31)] {
                    let sample = raster.sample(((window.y + y) * width + window.x + x) as usize * bands + band);
                    let expected = ((f32::from(sample) - low) * (1.0 / (high - low))).clamp(0.0, 1.0);
                    assert_eq!(tensor[[0, c, y as usize, x as usize]], expected, "band {band} at ({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn bad_images_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = std::fs::read(testdata("aerial/OSBS_029.tif")).expect("read");
        let truncated = dir.path().join("truncated.tif");
        std::fs::write(&truncated, &bytes[..bytes.len() / 3]).expect("write");
        let e = Raster::read(&truncated).expect_err("truncated");
        assert!(e.to_string().contains("truncated.tif"), "{e}");

        let text = dir.path().join("notes.png");
        std::fs::write(&text, b"this is not an image").expect("write");
        assert!(Raster::read(&text).expect_err("text").to_string().contains("notes.png"));

        let neon = Raster::read(&testdata("aerial/OSBS_029.tif")).expect("read");
        let e = neon.check_bands(&truncated, &[0, 4]).expect_err("band 4");
        assert!(e.to_string().contains("3 bands, but band 4"), "{e}");

        let dir2 = crate::reference_data::expect("satellite/sen2ships/casablanca");
        let e = Raster::read_bands(&[dir2.join("B02.tif"), testdata("aerial/OSBS_029.tif")]).expect_err("mismatch");
        assert!(e.to_string().contains("OSBS_029.tif"), "{e}");
    }

    #[test]
    fn a_band_file_damaged_anywhere_reads_or_fails_naming_the_file_never_panics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes =
            std::fs::read(crate::reference_data::expect("satellite/sen2ships/casablanca/B02.tif")).expect("read");
        let damaged = dir.path().join("damaged.tif");
        let mut failures = 0;
        // every 7th byte of the header and the first tags, then every 997th to the end
        for at in (0..512).step_by(7).chain((512..bytes.len()).step_by(997)) {
            let mut copy = bytes.clone();
            copy[at] ^= 0xff;
            std::fs::write(&damaged, &copy).expect("write");
            if let Err(e) = Raster::read(&damaged) {
                assert!(e.to_string().contains("damaged.tif"), "byte {at}: {e}");
                failures += 1;
            }
        }
        assert!(failures > 0, "some damage must be caught");
    }
}
