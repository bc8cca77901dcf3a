//! Where the project's third-party reference data is: real imagery and labels that came from
//! public repositories (not package registries), which the project reads and never commits. Its
//! tests, benchmarks and demo find it here; training scripts use the same rule
//! (models/train/yolo_layout.py `data_dir`).
//!
//! The folder is `$KESTREL_DATA`, or `shared/data` beside the repository (`../shared/data` from its
//! root). Data that `scripts/setup.sh` makes from it (the cloudy/clear series as band files) is in
//! the repository's git-ignored `var/reference/`.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MissingData {
    #[error(
        "`{folder}` is missing: it is third-party reference data from {upstream}, read from $KESTREL_DATA or \
         ../shared/data beside the repository (set KESTREL_DATA to the folder that holds it)"
    )]
    Reference { folder: PathBuf, upstream: &'static str },
    #[error("`{0}` is missing: scripts/setup.sh makes it from the reference data (run it first)")]
    Made(PathBuf),
}

/// The reference data folder.
pub fn root() -> PathBuf {
    std::env::var_os("KESTREL_DATA")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"), PathBuf::from)
}

/// Where a folder of the reference data came from.
fn upstream(relative: &str) -> &'static str {
    match relative.split('/').take(2).collect::<Vec<_>>()[..] {
        ["satellite", "sen2ships" | "sen2ships-more", ..] => {
            "ShipDetectionExperts/sen2ships on GitHub (MIT; modified Copernicus Sentinel data)"
        }
        ["satellite", "landsat7" | "goes16", ..] => "rasterio's test data on GitHub (CC0)",
        ["satellite", "sentinel2-cloudy-clear", ..] => "sentinel-hub/eo-learn's example data on GitHub (MIT)",
        _ => "the project's shared data folder (its README says where each file came from)",
    }
}

/// `relative` (e.g. `satellite/sen2ships/casablanca`) in the reference data, when it is there.
pub fn path(relative: &str) -> Result<PathBuf, MissingData> {
    let path = root().join(relative);
    if path.exists() { Ok(path) } else { Err(MissingData::Reference { folder: path, upstream: upstream(relative) }) }
}

/// `relative` in the reference data, for tests and benchmarks: a missing folder stops them with
/// the message that says where it comes from.
pub fn expect(relative: &str) -> PathBuf {
    path(relative).unwrap_or_else(|e| panic!("{e}"))
}

/// The five dates of the Sentinel-2 cloudy/clear series as band files (`date-0` .. `date-4`),
/// made by scripts/setup.sh into `var/reference/`.
pub fn cloudy_clear_dates() -> Result<PathBuf, MissingData> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../var/reference/sentinel2-cloudy-clear");
    if path.join("date-4").is_dir() { Ok(path) } else { Err(MissingData::Made(path)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_is_named_with_where_its_data_comes_from() {
        let e = path("satellite/sen2ships/atlantis").expect_err("no such scene").to_string();
        assert!(e.contains("satellite/sen2ships/atlantis") && e.contains("ShipDetectionExperts/sen2ships"), "{e}");
        assert!(e.contains("KESTREL_DATA"), "{e}");
    }
}
