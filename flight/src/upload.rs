//! Model upload by telecommand: the file comes up as segments (each one authenticated TC frame)
//! that are checkpointed as they arrive, so an upload spread over several passes survives
//! restarts; an `InstallModel` command then checks that every byte is there, the SHA-256 and the
//! ed25519 signature, writes the file, and builds the new detector. The running model is replaced
//! only once the new one has loaded; at every start the installed file is verified again before
//! it is used, and the manifest's model runs if it fails.

use std::io::Write;
use std::path::{Path, PathBuf};

use kestrel_dictionary::EventSource;
use kestrel_link::product::Severity;
use sha2::{Digest, Sha256};

use crate::checkpoint::InstalledModel;
use crate::mission_detector::{MissionDetector, manifest_model};
use crate::models::{self, VerifiedModel};
use crate::pipeline::{Change, Pipeline, RunError};

/// Largest file an upload may carry (models are at most 5 MB).
pub const MAX_UPLOAD_LEN: u64 = 8 << 20;
/// Uploads that may be under way at once; a segment of one more drops the oldest.
pub const MAX_UPLOADS: usize = 2;

const MODELS_DIR: &str = "models";

/// What `InstallModel` asks for.
pub(crate) struct Install<'a> {
    pub transfer: u64,
    pub model: &'a str,
    pub length: u64,
    pub sha256: &'a [u8; 32],
    pub signature: &'a [u8],
}

impl Pipeline {
    /// Keeps one segment of an upload; the reason if it is refused. A segment of a new upload
    /// when `MAX_UPLOADS` are under way drops the oldest of them (an upload the ground gave up on
    /// must not block the next), with an event.
    pub(crate) fn take_segment(
        &self,
        transfer: u64,
        offset: u64,
        bytes: Vec<u8>,
        now: i64,
        change: &mut Change,
    ) -> Option<String> {
        let end = offset.saturating_add(bytes.len() as u64);
        if end > MAX_UPLOAD_LEN {
            change.state.counters.upload_segments_refused += 1;
            return Some(format!(
                "segment at byte {offset} of upload {transfer} ends past the {MAX_UPLOAD_LEN}-byte limit"
            ));
        }
        if !change.state.uploads.contains_key(&transfer) && change.state.uploads.len() >= MAX_UPLOADS {
            let oldest = change.state.uploads.keys().next().copied().unwrap_or_default();
            change.state.uploads.remove(&oldest);
            change.batch.remove_upload(oldest);
            let message = format!("upload {oldest} dropped unfinished to make room for upload {transfer}");
            change.event(now, Severity::Warning, EventSource::Upload, message);
        }
        *change.state.uploads.entry(transfer).or_default() += bytes.len() as u64;
        change.state.counters.upload_segments += 1;
        change.batch.upload_segment(transfer, offset, bytes);
        None
    }

    /// Installs an uploaded model; what happened, or why not (the running model stays).
    pub(crate) fn install_model(
        &mut self,
        install: &Install,
        change: &mut Change,
    ) -> Result<Result<String, String>, RunError> {
        let transfer = install.transfer;
        let file = match assemble(self.checkpoint.upload(transfer)?, install.length) {
            Ok(file) => file,
            Err(missing) => return Ok(Err(format!("upload {transfer} is incomplete: {missing}; send it again"))),
        };
        // from here on the upload is used up, whatever the outcome
        change.batch.remove_upload(transfer);
        change.state.uploads.remove(&transfer);
        let digest: [u8; 32] = Sha256::digest(&file).into();
        if &digest != install.sha256 {
            return Ok(Err(format!(
                "upload {transfer} has SHA-256 {}, the command says {}",
                models::hex(&digest),
                models::hex(install.sha256)
            )));
        }
        let installed = InstalledModel {
            model: install.model.to_owned(),
            transfer,
            file: Path::new(MODELS_DIR).join(format!("{}-{}.onnx", install.model, &models::hex(&digest)[..16])),
            sha256: digest,
            signature: install.signature.to_vec(),
        };
        let path = self.state_dir.join(&installed.file);
        if let Err(e) = write_durably(&path, &file) {
            return Ok(Err(format!("model from upload {transfer} cannot be written to `{}`: {e}", path.display())));
        }
        let detector = match self.verified_installed(&installed).and_then(|model| {
            MissionDetector::with_model(&self.mission, model).map_err(|e| format!("it does not load: {e}"))
        }) {
            Ok(detector) => detector,
            Err(why) => {
                std::fs::remove_file(&path).ok();
                let running = self.running_model();
                return Ok(Err(format!("model from upload {transfer} refused: {why}; {running} keeps running")));
            }
        };
        let mut detector = detector;
        match detector.detector().canary() {
            Ok(canary) => self.canary = Some(canary),
            Err(e) => {
                std::fs::remove_file(&path).ok();
                let running = self.running_model();
                return Ok(Err(format!(
                    "model from upload {transfer} refused: it does not run: {e}; {running} keeps running"
                )));
            }
        }
        self.detector = Some(detector);
        if let Some(old) = change.state.installed_model.replace(installed.clone())
            && old.file != installed.file
        {
            std::fs::remove_file(self.state_dir.join(&old.file)).ok();
        }
        Ok(Ok(format!(
            "model `{}` replaced by upload {transfer} ({} bytes, SHA-256 {})",
            installed.model,
            file.len(),
            models::hex(&digest)
        )))
    }

    /// Checks the installed file (just written, or found at a start) against its hash and
    /// signature, and that the manifest knows the model whose weights it replaces.
    fn verified_installed(&self, installed: &InstalledModel) -> Result<VerifiedModel, String> {
        let key = self.mission.resolve(self.mission.config.flight.detector.verifying_key.get_ref());
        models::check_signature(&key, &installed.sha256, &installed.signature).map_err(|e| e.to_string())?;
        let mut model = manifest_model(&self.mission, &installed.model).map_err(|e| e.to_string())?;
        let path = self.state_dir.join(&installed.file);
        let digest = models::file_sha256(&path).map_err(|e| e.to_string())?;
        if digest != installed.sha256 {
            return Err(format!("`{}` has SHA-256 {}, not the installed one's", path.display(), models::hex(&digest)));
        }
        model.path = path;
        Ok(model)
    }

    /// The detector for this start: the installed model if there is one and it still verifies
    /// and loads, else the manifest's.
    pub(crate) fn load_detector(&self, now: i64, change: &mut Change) -> Result<MissionDetector, String> {
        if let Some(installed) = change.state.installed_model.clone() {
            let loaded = self.verified_installed(&installed).and_then(|model| {
                MissionDetector::with_model(&self.mission, model).map_err(|e| format!("it does not load: {e}"))
            });
            match loaded {
                Ok(detector) => return Ok(detector),
                Err(why) => {
                    let message = format!(
                        "the model installed from upload {} cannot be used: {why}; the manifest's model runs",
                        installed.transfer
                    );
                    change.event(now, Severity::Error, EventSource::Model, message);
                    change.state.installed_model = None;
                }
            }
        }
        MissionDetector::load(&self.mission, None).map_err(|e| e.to_string())
    }

    /// The model running now, for messages.
    pub(crate) fn running_model(&self) -> String {
        match &self.checkpoint.state().installed_model {
            Some(installed) => format!("model `{}` from upload {}", installed.model, installed.transfer),
            None => format!("the manifest's model `{}`", self.mission.config.flight.detector.model),
        }
    }
}

/// The file from its segments (by offset), or which bytes are missing.
fn assemble(segments: Vec<(u64, Vec<u8>)>, length: u64) -> Result<Vec<u8>, String> {
    if length > MAX_UPLOAD_LEN {
        return Err(format!("{length} bytes is over the {MAX_UPLOAD_LEN}-byte limit"));
    }
    let mut file = Vec::with_capacity(length as usize);
    for (offset, bytes) in segments {
        let held = file.len() as u64;
        if offset > held {
            return Err(format!("bytes {held}..{offset} have not arrived"));
        }
        // segments may overlap when the ground cut them differently on a second try
        let skip = (held - offset) as usize;
        if skip < bytes.len() {
            file.extend_from_slice(&bytes[skip..]);
        }
    }
    if (file.len() as u64) < length {
        return Err(format!("bytes {}..{length} have not arrived", file.len()));
    }
    file.truncate(length as usize);
    Ok(file)
}

/// Writes `bytes` to `path` so that a crash leaves either nothing or the whole file.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let temporary: PathBuf = path.with_extension("part");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_assembled_from_its_segments_or_says_which_bytes_are_missing() {
        let segments = vec![(0, vec![1, 2, 3]), (3, vec![4, 5]), (4, vec![5, 6, 7])];
        assert_eq!(assemble(segments.clone(), 7), Ok(vec![1, 2, 3, 4, 5, 6, 7]));
        assert_eq!(assemble(segments.clone(), 6), Ok(vec![1, 2, 3, 4, 5, 6]));
        assert_eq!(assemble(segments, 9), Err("bytes 7..9 have not arrived".into()));
        assert_eq!(assemble(vec![(0, vec![1]), (5, vec![2])], 6), Err("bytes 1..5 have not arrived".into()));
        assert_eq!(assemble(Vec::new(), 1), Err("bytes 0..1 have not arrived".into()));
        assert!(assemble(Vec::new(), MAX_UPLOAD_LEN + 1).is_err());
    }
}
