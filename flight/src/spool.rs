//! The hand-off from the camera driver: it writes a frame (an image file, or a folder of band
//! files) under a name starting with `.` and renames it into the spool when complete, so anything
//! visible there is whole. The pipeline claims a frame by renaming it on board (`incoming/`), then
//! records it with its checksum and moves it to `frames/`; each step is idempotent, so a crash
//! between any two of them loses nothing and processes nothing twice.
//!
//! The spool and the state directory must be on one file system (renames are atomic only there).

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use kestrel_mission::cli::escape_controls;
use sha2::{Digest, Sha256};

/// The path's control characters (a newline in a file name) are escaped when it is shown.
#[derive(Debug, thiserror::Error)]
#[error("spool `{}`: {message}", escape_controls(&path.to_string_lossy()))]
pub struct SpoolError {
    pub path: PathBuf,
    pub message: String,
}

fn spool_error(path: &Path, e: impl std::fmt::Display) -> SpoolError {
    SpoolError { path: path.to_path_buf(), message: e.to_string() }
}

/// A frame on board, its content hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub name: String,
    pub path: PathBuf,
    pub sha256: [u8; 32],
    /// The camera's capture time: the newest modification time of the frame's files.
    pub time_ms: i64,
    pub bytes: u64,
}

impl Arrival {
    /// The frame's stable id: from its content, so the same frame always makes the same products.
    pub fn frame_id(&self) -> u64 {
        stable_id(&[&self.sha256])
    }
}

/// A 63-bit id from `parts` (SHA-256); 63 bits so that it sorts the same as a signed database key.
pub fn stable_id(parts: &[&[u8]]) -> u64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    u64::from_be_bytes([digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7]])
        & !(1 << 63)
}

#[derive(Debug, Clone)]
pub struct Spool {
    spool: PathBuf,
    incoming: PathBuf,
    frames: PathBuf,
    quarantine: PathBuf,
}

impl Spool {
    pub fn new(spool: PathBuf, state_dir: &Path) -> Result<Self, SpoolError> {
        let this = Self {
            spool,
            incoming: state_dir.join("incoming"),
            frames: state_dir.join("frames"),
            quarantine: state_dir.join("quarantine"),
        };
        for dir in [&this.spool, &this.incoming, &this.frames, &this.quarantine] {
            std::fs::create_dir_all(dir).map_err(|e| spool_error(dir, e))?;
        }
        Ok(this)
    }

    /// Claims the oldest complete frame of the spool (moves it on board), if any. Frames claimed
    /// before a restart and not yet recorded come first.
    pub fn claim(&self) -> Result<Option<PathBuf>, SpoolError> {
        if let Some(waiting) = oldest(&self.incoming)? {
            return Ok(Some(waiting));
        }
        let Some(ready) = oldest(&self.spool)? else { return Ok(None) };
        let name = ready.file_name().unwrap_or_default();
        let target = self.incoming.join(name);
        std::fs::rename(&ready, &target).map_err(|e| spool_error(&ready, e))?;
        Ok(Some(target))
    }

    /// Hashes a claimed frame. Only regular files are read (a link, FIFO, device or socket in the
    /// spool is an error, never followed or waited on), each up to the length it had when looked
    /// at, so that no entry can hold the reading up.
    pub fn examine(&self, claimed: &Path) -> Result<Arrival, SpoolError> {
        let kind = std::fs::symlink_metadata(claimed).map_err(|e| spool_error(claimed, e))?.file_type();
        let mut files = if kind.is_dir() {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(claimed).map_err(|e| spool_error(claimed, e))? {
                let path = entry.map_err(|e| spool_error(claimed, e))?.path();
                let kind = std::fs::symlink_metadata(&path).map_err(|e| spool_error(&path, e))?.file_type();
                // a frame's subfolders are not part of it
                if !kind.is_dir() {
                    regular(&path, kind)?;
                    files.push(path);
                }
            }
            files.sort();
            files
        } else {
            regular(claimed, kind)?;
            vec![claimed.to_path_buf()]
        };
        files.retain(|f| !f.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')));
        let mut hasher = Sha256::new();
        let (mut bytes, mut time_ms) = (0u64, 0i64);
        for file in &files {
            let relative = file.strip_prefix(claimed).unwrap_or(Path::new(""));
            hasher.update(relative.to_string_lossy().as_bytes());
            let reader = open_regular(file)?;
            let metadata = reader.metadata().map_err(|e| spool_error(file, e))?;
            bytes += std::io::copy(&mut std::io::Read::take(reader, metadata.len()), &mut hasher)
                .map_err(|e| spool_error(file, e))?;
            let modified = metadata.modified().map_err(|e| spool_error(file, e))?;
            let ms = modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            time_ms = time_ms.max(ms);
        }
        Ok(Arrival {
            name: claimed.file_name().unwrap_or_default().to_string_lossy().into_owned(),
            path: claimed.to_path_buf(),
            sha256: hasher.finalize().into(),
            time_ms,
            bytes,
        })
    }

    /// Moves a claimed frame that cannot be examined into `quarantine/` under a name no other
    /// quarantined entry has; when even that fails, removes it, so that it is not claimed again at
    /// every start. Returns where it went (None: removed).
    pub fn quarantine_unexamined(&self, claimed: &Path) -> Result<Option<PathBuf>, SpoolError> {
        let name = claimed.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let target = unused_path(&self.quarantine, &format!("unexamined-{name}"));
        match std::fs::rename(claimed, &target) {
            Ok(()) => Ok(Some(target)),
            Err(_) => remove(claimed).map(|()| None),
        }
    }

    /// Where a recorded frame is kept on board, relative to the state directory.
    pub fn frame_file(arrival: &Arrival) -> PathBuf {
        PathBuf::from("frames").join(format!("{:016x}-{}", arrival.frame_id(), arrival.name))
    }

    /// Moves a recorded frame from `incoming/` to its place (`frames/...` or `quarantine/...`,
    /// relative to the state directory); a frame already there is dropped from `incoming/`.
    pub fn settle(&self, arrival: &Arrival, state_dir: &Path, relative: &Path) -> Result<(), SpoolError> {
        let target = state_dir.join(relative);
        if target.exists() {
            return remove(&arrival.path);
        }
        std::fs::rename(&arrival.path, &target).map_err(|e| spool_error(&arrival.path, e))
    }

    /// Drops a claimed frame that is already on board (the same content arrived again).
    pub fn discard(&self, arrival: &Arrival) -> Result<(), SpoolError> {
        remove(&arrival.path)
    }

    /// Frames waiting: in the spool, or claimed and not yet recorded.
    pub fn waiting(&self) -> usize {
        [&self.spool, &self.incoming]
            .iter()
            .map(|dir| {
                std::fs::read_dir(dir).map_or(0, |entries| {
                    entries.filter_map(Result::ok).filter(|e| !e.file_name().to_string_lossy().starts_with('.')).count()
                })
            })
            .sum()
    }
}

/// `Ok` for a regular file; an error saying what `path` is otherwise.
fn regular(path: &Path, kind: std::fs::FileType) -> Result<(), SpoolError> {
    use std::os::unix::fs::FileTypeExt;
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "not a file"
    };
    Err(spool_error(path, format!("{what}, not a regular file: frames are regular files or folders of them")))
}

/// Opens `path` for reading only if it still is a regular file: never through a link, and never
/// waiting for a FIFO's writer (it may have been swapped since it was looked at).
fn open_regular(path: &Path) -> Result<std::fs::File, SpoolError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| spool_error(path, e))?;
    regular(path, file.metadata().map_err(|e| spool_error(path, e))?.file_type())?;
    Ok(file)
}

/// `dir/name`, or `dir/name-2`, `dir/name-3`, ... : the first that does not exist.
pub fn unused_path(dir: &Path, name: &str) -> PathBuf {
    let mut candidate = dir.join(name);
    let mut n = 2;
    while candidate.symlink_metadata().is_ok() {
        candidate = dir.join(format!("{name}-{n}"));
        n += 1;
    }
    candidate
}

/// Removes a frame file or folder kept on board.
pub fn remove(path: &Path) -> Result<(), SpoolError> {
    // a link is removed itself, never what it points at
    let result = if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(spool_error(path, e)),
        _ => Ok(()),
    }
}

/// The entry of `dir` with the oldest modification time (then name), skipping hidden ones.
fn oldest(dir: &Path) -> Result<Option<PathBuf>, SpoolError> {
    let entries = std::fs::read_dir(dir).map_err(|e| spool_error(dir, e))?;
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in entries.filter_map(Result::ok) {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(UNIX_EPOCH);
        let candidate = (modified, entry.path());
        if best.as_ref().is_none_or(|b| candidate < *b) {
            best = Some(candidate);
        }
    }
    Ok(best.map(|(_, path)| path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_oldest_first_skips_hidden_and_ids_follow_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::new(dir.path().join("spool"), &dir.path().join("state")).expect("spool");
        let write = |name: &str, content: &[u8], age_s: u64| {
            let path = dir.path().join("spool").join(name);
            std::fs::write(&path, content).expect("write");
            let time = std::time::SystemTime::now() - std::time::Duration::from_secs(age_s);
            std::fs::File::options().write(true).open(&path).expect("open").set_modified(time).expect("mtime");
        };
        write("b.png", b"second", 10);
        write("a.png", b"first", 20);
        write(".c.png.part", b"still being written", 30);
        let first = spool.claim().expect("claim").expect("a frame");
        assert!(first.ends_with("incoming/a.png"), "{}", first.display());
        // until recorded, the claimed frame is what claim gives again (a restart resumes it)
        assert_eq!(spool.claim().expect("claim"), Some(first.clone()));
        let arrival = spool.examine(&first).expect("examine");
        assert_eq!(arrival.bytes, 5);
        assert_eq!(arrival.frame_id(), stable_id(&[&arrival.sha256]));
        assert!(arrival.frame_id() < 1 << 63);
        let state = dir.path().join("state");
        spool.settle(&arrival, &state, &Spool::frame_file(&arrival)).expect("settle");
        assert!(state.join(Spool::frame_file(&arrival)).is_file());
        assert_eq!(spool.waiting(), 1, "b.png");
        let second = spool.claim().expect("claim").expect("b");
        assert_ne!(spool.examine(&second).expect("examine").frame_id(), arrival.frame_id());
    }

    #[test]
    fn links_fifos_and_devices_are_refused_at_once_and_never_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::new(dir.path().join("spool"), &dir.path().join("state")).expect("spool");
        let incoming = dir.path().join("state/incoming");
        let fifo = incoming.join("camera.fifo");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
        assert!(status.success());
        let zero = incoming.join("zero.png");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
        let folder = incoming.join("scene");
        std::fs::create_dir(&folder).expect("scene");
        std::fs::write(folder.join("B08.tif"), b"band").expect("band");
        std::os::unix::fs::symlink("/etc/passwd", folder.join("B11.tif")).expect("symlink");
        for (entry, what) in [(&fifo, "a FIFO"), (&zero, "a symbolic link"), (&folder, "a symbolic link")] {
            let e = spool.examine(entry).expect_err("not a regular file").to_string();
            assert!(e.contains(what) && e.contains("not a regular file"), "{e}");
        }
        let device = spool.examine(Path::new("/dev/null")).expect_err("a device").to_string();
        assert!(device.contains("a device"), "{device}");
    }

    #[test]
    fn a_newline_in_an_entry_name_is_escaped_wherever_the_name_is_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::new(dir.path().join("spool"), &dir.path().join("state")).expect("spool");
        let claimed = dir.path().join("state/incoming/a.png\n2026-03-20T00:00:00Z  INFO forged");
        std::os::unix::fs::symlink("/dev/zero", &claimed).expect("symlink");
        let e = spool.examine(&claimed).expect_err("a link").to_string();
        assert!(!e.contains('\n') && e.contains("a.png\\n2026-03-20"), "{e}");
    }

    #[test]
    fn unexamined_entries_of_the_same_name_are_quarantined_side_by_side() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::new(dir.path().join("spool"), &dir.path().join("state")).expect("spool");
        let mut places = Vec::new();
        for _ in 0..3 {
            let claimed = dir.path().join("state/incoming/frame.png");
            std::os::unix::fs::symlink("/dev/zero", &claimed).expect("symlink");
            places.push(spool.quarantine_unexamined(&claimed).expect("quarantined").expect("moved"));
            assert!(claimed.symlink_metadata().is_err(), "no longer claimed");
        }
        let names: Vec<_> =
            places.iter().map(|p| p.file_name().expect("name").to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["unexamined-frame.png", "unexamined-frame.png-2", "unexamined-frame.png-3"]);
        assert!(places.iter().all(|p| p.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink())));
    }
}
