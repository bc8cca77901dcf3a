//! Cutting a frame of any size into model-sized tiles that overlap, so that an object on a tile
//! edge is whole in at least one tile (detections on both are merged afterwards by NMS).

/// A tile's window in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// Tile positions along one axis: `tile`-long windows, consecutive ones overlapping by at least
/// `overlap`, the last one flush with the end; one window when the axis is shorter than a tile.
fn starts(length: u32, tile: u32, overlap: u32) -> Vec<u32> {
    if length <= tile {
        return vec![0];
    }
    let stride = tile.saturating_sub(overlap).max(1);
    let span = length - tile;
    let count = span.div_ceil(stride) + 1;
    // spread the windows evenly so that every overlap is at least the one asked for
    (0..count).map(|i| (u64::from(span) * u64::from(i) / u64::from(count - 1)) as u32).collect()
}

/// The windows that cover a `width` x `height` frame with `tile`-sized, `overlap`-overlapping tiles.
pub fn windows(width: u32, height: u32, tile: u32, overlap: u32) -> Vec<Window> {
    let xs = starts(width, tile, overlap);
    let ys = starts(height, tile, overlap);
    ys.iter()
        .flat_map(|&y| xs.iter().map(move |&x| Window { x, y, width: tile.min(width), height: tile.min(height) }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_every_pixel_with_the_overlap_asked() {
        for (width, height, tile, overlap) in
            [(1000, 700, 256, 32), (256, 256, 256, 32), (257, 100, 256, 64), (10_000, 10_000, 640, 64)]
        {
            let all = windows(width, height, tile, overlap);
            for w in &all {
                assert!(w.x + w.width <= width && w.y + w.height <= height);
            }
            // every column and row is covered
            let xs = starts(width, tile, overlap);
            assert_eq!(xs[0], 0);
            assert_eq!(*xs.last().expect("one") + tile.min(width), width);
            for pair in xs.windows(2) {
                assert!(pair[0] + tile >= pair[1] + overlap, "{pair:?} overlap under {overlap}");
            }
            assert_eq!(all.len(), xs.len() * starts(height, tile, overlap).len());
        }
    }

    #[test]
    fn a_frame_smaller_than_a_tile_is_one_window() {
        assert_eq!(windows(100, 50, 256, 32), vec![Window { x: 0, y: 0, width: 100, height: 50 }]);
    }
}
