//! Resizing a tile's samples the way OpenCV's `cv2.resize(image, size, INTER_LINEAR)` resizes an
//! image of the same sample type: how Ultralytics, and most training pipelines, resize. A model
//! then sees the numbers it saw in training, not an approximation of them.
//!
//! OpenCV's arithmetic, read from its behaviour (`scripts/ultralytics-interop.sh` compares the two
//! bit for bit): pixel centres aligned; along x a position before the first sample or past the
//! last takes that sample, along y the rows are clamped but the weight is not; 8-bit samples in
//! fixed point, weights of 11 bits, the rows combined as its vectorised path combines them
//! (each product shifted down before the sum, which can be one level below exact rounding);
//! 16-bit samples in single precision, rounded to the nearest sample (within one level of
//! OpenCV's, whose order of operations differs).

/// Where one output position along an axis reads: two source positions (from the axis' start)
/// and the weight of the second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tap {
    pub first: usize,
    pub second: usize,
    pub weight: f32,
}

/// The taps of `target` output positions over `source` samples; `clamp_weight`: a position
/// outside the samples takes the sample at that edge (x), else only its rows are clamped (y).
pub fn taps(source: usize, target: usize, clamp_weight: bool) -> Vec<Tap> {
    let scale = 1.0 / (target as f64 / source as f64);
    let last = source.saturating_sub(1) as i64;
    (0..target)
        .map(|d| {
            let at = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let floor = at.floor();
            let (first, weight) = match floor as i64 {
                f if clamp_weight && f < 0 => (0, 0.0),
                f if clamp_weight && f >= last => (last, 0.0),
                f => (f, at - floor),
            };
            Tap { first: first.clamp(0, last) as usize, second: (first + 1).clamp(0, last) as usize, weight }
        })
        .collect()
}

/// The two weights of a tap in OpenCV's 8-bit fixed point (of 2048, rounded half to even).
fn fixed_weights(weight: f32) -> (i32, i32) {
    let scaled = |w: f32| (w * 2048.0).round_ties_even() as i32;
    (scaled(1.0 - weight), scaled(weight))
}

/// A resize of a `width` x `height` plane to `columns.len()` x `rows.len()`.
#[derive(Debug, Clone)]
pub struct Resizer {
    columns: Vec<Tap>,
    rows: Vec<Tap>,
}

impl Resizer {
    pub fn new(width: usize, height: usize, out_width: usize, out_height: usize) -> Self {
        Self { columns: taps(width, out_width, true), rows: taps(height, out_height, false) }
    }

    /// Resizes the 8-bit plane whose row `y` `row(y, x)` reads; `put(x, y, value)` takes each
    /// output sample.
    pub fn resize_u8(&self, row: impl Fn(usize, usize) -> u8, mut put: impl FnMut(usize, usize, f32)) {
        let weights: Vec<(i32, i32)> = self.columns.iter().map(|t| fixed_weights(t.weight)).collect();
        let horizontal = |y: usize| -> Vec<i32> {
            self.columns
                .iter()
                .zip(&weights)
                .map(|(t, &(a0, a1))| i32::from(row(y, t.first)) * a0 + i32::from(row(y, t.second)) * a1)
                .collect()
        };
        self.each_row(horizontal, |oy, upper, lower, weight| {
            let (b0, b1) = fixed_weights(weight);
            for (ox, (&u, &l)) in upper.iter().zip(lower).enumerate() {
                let value = ((((u >> 4) * b0) >> 16) + (((l >> 4) * b1) >> 16) + 2) >> 2;
                put(ox, oy, value.clamp(0, 255) as f32);
            }
        });
    }

    /// As [`Resizer::resize_u8`], for 16-bit samples.
    pub fn resize_u16(&self, row: impl Fn(usize, usize) -> u16, mut put: impl FnMut(usize, usize, f32)) {
        let horizontal = |y: usize| -> Vec<f32> {
            self.columns
                .iter()
                .map(|t| f32::from(row(y, t.first)) * (1.0 - t.weight) + f32::from(row(y, t.second)) * t.weight)
                .collect()
        };
        self.each_row(horizontal, |oy, upper, lower, weight| {
            for (ox, (&u, &l)) in upper.iter().zip(lower).enumerate() {
                put(ox, oy, (u * (1.0 - weight) + l * weight).round_ties_even().clamp(0.0, 65_535.0));
            }
        });
    }

    /// For each output row, its two source rows resized along x (each source row once: output
    /// rows in turn share them) and the weight of the lower one.
    fn each_row<T>(&self, horizontal: impl Fn(usize) -> Vec<T>, mut combine: impl FnMut(usize, &[T], &[T], f32)) {
        let mut resized: Vec<(usize, Vec<T>)> = Vec::with_capacity(2);
        for (oy, tap) in self.rows.iter().enumerate() {
            resized.retain(|(y, _)| *y == tap.first || *y == tap.second);
            for y in [tap.first, tap.second] {
                if !resized.iter().any(|(at, _)| *at == y) {
                    resized.push((y, horizontal(y)));
                }
            }
            let row = |y: usize| resized.iter().find(|(at, _)| *at == y).map_or(&[][..], |(_, r)| &r[..]);
            combine(oy, row(tap.first), row(tap.second), tap.weight);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resized(width: usize, height: usize, out: (usize, usize), sample: impl Fn(usize, usize) -> u8) -> Vec<f32> {
        let mut values = vec![f32::NAN; out.0 * out.1];
        Resizer::new(width, height, out.0, out.1).resize_u8(sample, |x, y, v| values[y * out.0 + x] = v);
        values
    }

    #[test]
    fn the_taps_are_opencvs_pixel_centres_clamped_along_x_only() {
        let x = taps(4, 8, true);
        assert_eq!((x[0].first, x[0].second, x[0].weight), (0, 1, 0.0), "before the first centre: the edge sample");
        assert_eq!((x[1].first, x[1].weight), (0, 0.25));
        assert_eq!((x[7].first, x[7].second, x[7].weight), (3, 3, 0.0));
        let y = taps(4, 8, false);
        assert_eq!((y[0].first, y[0].second, y[0].weight), (0, 0, 0.75), "rows clamped, the weight kept");
        assert_eq!((y[7].first, y[7].second, y[7].weight), (3, 3, 0.25));
    }

    #[test]
    fn eight_bit_samples_resize_to_what_opencv_gives() {
        assert!(resized(3, 5, (7, 9), |_, _| 200).iter().all(|v| *v == 200.0), "a flat plane stays flat");
        // cv2.resize(np.array([[0, 255, 17], [90, 3, 250]], np.uint8), (5, 4)), OpenCV 5.1
        let plane = [[0, 255, 17], [90, 3, 250]];
        let expected = [[0, 102, 255, 112, 17], [23, 90, 192, 122, 75], [68, 67, 66, 141, 192], [90, 55, 3, 151, 250]];
        let expected: Vec<f32> = expected.iter().flatten().map(|&v| v as f32).collect();
        assert_eq!(resized(3, 2, (5, 4), |y, x| plane[y][x]), expected);
        // rows: the top and bottom weights are not clamped (their rows are)
        let column = resized(1, 3, (1, 7), |y, _| [0, 255, 0][y]);
        assert_eq!(column, [0.0, 36.0, 146.0, 255.0, 146.0, 36.0, 0.0]);
    }

    #[test]
    fn sixteen_bit_samples_resize_in_single_precision_rounded_to_a_sample() {
        let mut values = vec![0.0; 4];
        Resizer::new(2, 1, 4, 1).resize_u16(|_, x| [1000, 1003][x], |x, _, v| values[x] = v);
        assert_eq!(values, [1000.0, 1001.0, 1002.0, 1003.0]);
    }
}
