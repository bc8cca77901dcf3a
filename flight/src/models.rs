//! The model manifest (`models/models.toml`): every model the spacecraft may run, with its file's
//! SHA-256 and an ed25519 signature of that digest. A model whose hash or signature does not
//! match is refused before ONNX Runtime ever sees it. The verifying key ships with the software;
//! the signing key never does: signing is an operator step (`flight-tools sign-model`).

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use kestrel_mission::{MissionError, MissionFile};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(default)]
    models: Vec<ModelEntry>,
}

/// One model as the manifest declares it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub name: String,
    /// The ONNX file, relative to the manifest.
    pub file: Spanned<PathBuf>,
    /// Hex SHA-256 of the file (`flight-tools sign-model` writes it). An entry without it is not signed
    /// yet: that model is refused, the others load.
    #[serde(default)]
    pub sha256: Option<Spanned<String>>,
    /// Hex ed25519 signature of the SHA-256 digest (`flight-tools sign-model` writes it).
    #[serde(default)]
    pub signature: Option<Spanned<String>>,
    /// What the model gives: boxes (a detector) or a cloud mask.
    #[serde(default)]
    pub kind: ModelKind,
    /// The class names, in the model's order; a model exported by Ultralytics names its own.
    #[serde(default)]
    pub classes: Option<Spanned<Vec<String>>>,
    /// Square input side, pixels; an Ultralytics export states its own (`imgsz`).
    #[serde(default)]
    pub input_size: Option<Spanned<u32>>,
    /// Input channels (bands) the model takes; an Ultralytics export states its own (`channels`).
    #[serde(default)]
    pub input_channels: Option<Spanned<usize>>,
    /// How a tile's samples become the model's input: linearly from `[low, high]` onto 0..1
    /// (`[0, 255]`: divided by 255, as Ultralytics trains); absent, each band between the
    /// mission's per-scene quantiles (`flight.detector.scale_quantiles`).
    #[serde(default)]
    pub input_range: Option<Spanned<[f32; 2]>>,
    /// How a tile other than the model's size is resized.
    #[serde(default)]
    pub resize: Option<crate::model_io::Resize>,
    /// Where a resized tile sits in the model's square input.
    #[serde(default)]
    pub letterbox: Option<crate::model_io::Letterbox>,
    /// The input value (after scaling) of the letterbox's padding.
    #[serde(default)]
    pub letterbox_pad: Option<Spanned<f32>>,
    /// For a model whose input height and width are free: the padding is trimmed to a multiple
    /// of this many pixels (0: the square always); an Ultralytics export's own `stride` where absent.
    #[serde(default)]
    pub letterbox_stride: Option<Spanned<u32>>,
    /// How the output holds the detections (else from the file's Ultralytics metadata, else
    /// `candidates`).
    #[serde(default)]
    pub output_layout: Option<Spanned<crate::model_io::OutputLayout>>,
    /// The band files of a scene folder that feed the model's channels, in order, when they are
    /// the model's own (it was trained on them); otherwise the mission's
    /// `flight.detector.band_files`.
    #[serde(default)]
    pub band_files: Option<Vec<String>>,
    /// The bands (0-based) of a multi-band image that feed the model's channels, in order, when
    /// they are the model's own; otherwise the mission's `flight.detector.bands`.
    #[serde(default)]
    pub bands: Option<Vec<usize>>,
    /// A detector's score threshold; a cloud mask's probability above which a cell is cloud.
    pub min_score: f32,
    /// A detector's overlap above which the weaker of two boxes is suppressed.
    pub max_iou: Option<f32>,
    /// The model card, relative to the manifest.
    pub card: PathBuf,
}

/// What a model gives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Boxes in the YOLOv8/YOLO11 export layout `[1, 4 + classes, N]`.
    #[default]
    Detector,
    /// The probability of cloud in each cell of a grid over the input: `[1, 1, H, W]`.
    CloudMask,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Detector => "detector",
            Self::CloudMask => "cloud_mask",
        }
    }
}

/// A model whose file matched its hash and signature when the manifest was loaded.
#[derive(Debug, Clone)]
pub struct VerifiedModel {
    pub entry: ModelEntry,
    pub path: PathBuf,
    /// The manifest it came from, and its place there: what errors about its keys point at.
    pub manifest: MissionFile,
    pub index: usize,
}

impl VerifiedModel {
    /// An error about key `key` of this model's entry (`input_size`), at `span` when it has one.
    pub fn key_error(&self, key: &str, span: Option<std::ops::Range<usize>>, message: impl Into<String>) -> ModelError {
        let key = format!("models[{}].{key}", self.index);
        let span = span.unwrap_or_else(|| self.entry.file.span());
        ModelError::Manifest(self.manifest.error_at(
            span,
            &key,
            format!("model `{}`: {}", self.entry.name, message.into()),
        ))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Manifest(#[from] MissionError),
    #[error("`{path}`: {message}")]
    Key { path: PathBuf, message: String },
    #[error("model `{name}` (`{path}`): {message}; refused")]
    Refused { name: String, path: PathBuf, message: String },
    #[error("no model named `{0}` in the manifest")]
    Unknown(String),
    #[error("model `{name}` is a {found} in the manifest; `{key}` needs a {expected}")]
    Kind { name: String, found: &'static str, expected: &'static str, key: &'static str },
    #[error("model `{name}`: a detector needs `max_iou` in the manifest")]
    NoMaxIou { name: String },
    #[error("`{path}`: {message}")]
    Io { path: PathBuf, message: String },
}

use kestrel_link::hex::decode as unhex;
/// Hex of a digest or signature, as the manifest writes them.
pub use kestrel_link::hex::encode as hex;

/// A key of `N` bytes from a file of hexadecimal digits (`what` names it in the error).
pub fn read_key<const N: usize>(path: &Path, what: &str) -> Result<[u8; N], ModelError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ModelError::Key { path: path.to_path_buf(), message: e.to_string() })?;
    unhex(&text).ok_or_else(|| ModelError::Key {
        path: path.to_path_buf(),
        message: format!("expected a {what} as {} hexadecimal digits", 2 * N),
    })
}

/// The SHA-256 of a file.
pub fn file_sha256(path: &Path) -> Result<[u8; 32], ModelError> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::Io { path: path.to_path_buf(), message: e.to_string() })?;
    Ok(Sha256::digest(&bytes).into())
}

/// The ed25519 verifying key in a file of 64 hexadecimal digits.
pub fn verifying_key(path: &Path) -> Result<VerifyingKey, ModelError> {
    VerifyingKey::from_bytes(&read_key::<32>(path, "verifying key")?)
        .map_err(|e| ModelError::Key { path: path.to_path_buf(), message: e.to_string() })
}

/// Checks that `signature` signs `digest` under the verifying key in `verifying_key`; the reason
/// if it does not.
pub fn check_signature(verifying_key_file: &Path, digest: &[u8; 32], signature: &[u8]) -> Result<(), ModelError> {
    let key = verifying_key(verifying_key_file)?;
    let refused = |message: &str| ModelError::Key { path: verifying_key_file.to_path_buf(), message: message.into() };
    let signature: [u8; 64] = signature.try_into().map_err(|_| refused("a signature is 64 bytes"))?;
    key.verify(digest, &Signature::from_bytes(&signature))
        .map_err(|_| refused("the signature does not verify with this verifying key"))
}

/// Loads the manifest (every entry checked for form, names unique) and model `name` from it, its
/// file's hash and signature verified with the verifying key. Only that model's file is read: a
/// missing or damaged file of another model does not keep this one from loading (it is refused
/// when it is asked for).
pub fn load_verified(manifest: &Path, verifying_key_file: &Path, name: &str) -> Result<VerifiedModel, ModelError> {
    let key = verifying_key(verifying_key_file)?;
    let file = MissionFile::read(manifest)?;
    let parsed: ManifestFile = file.parse_document()?;
    let mut found = None;
    for (i, entry) in parsed.models.iter().enumerate() {
        if parsed.models[..i].iter().any(|earlier| earlier.name == entry.name) {
            let message = format!("model `{}` is declared twice", entry.name);
            return Err(file.error_at(entry.file.span(), &format!("models[{i}].name"), message).into());
        }
        if entry.name == name {
            found = Some((i, entry.clone()));
        }
    }
    let (index, entry) = found.ok_or_else(|| ModelError::Unknown(name.to_owned()))?;
    let signed = |value: &Option<Spanned<String>>, key: &str, digits: usize| {
        let key = format!("models[{index}].{key}");
        let unsigned = || {
            let message =
                format!("model `{name}` is not signed: `flight-tools sign-model --model {name}` writes `{key}`");
            file.error_at(entry.file.span(), &key, message)
        };
        let value = value.as_ref().ok_or_else(unsigned)?;
        let expected = format!("expected {digits} hexadecimal digits");
        Ok::<_, MissionError>((value.get_ref().clone(), file.error_at(value.span(), &key, expected)))
    };
    let (sha256, bad_sha256) = signed(&entry.sha256, "sha256", 64)?;
    let (signature_hex, bad_signature) = signed(&entry.signature, "signature", 128)?;
    let expected = unhex::<32>(&sha256).ok_or(bad_sha256)?;
    let signature = unhex::<64>(&signature_hex).ok_or(bad_signature)?;
    let path = file.resolve(entry.file.get_ref());
    let refuse = |message: String| ModelError::Refused { name: entry.name.clone(), path: path.clone(), message };
    let digest = file_sha256(&path)?;
    if digest != expected {
        return Err(refuse(format!("its SHA-256 is {}, the manifest says {sha256}", hex(&digest))));
    }
    key.verify(&digest, &Signature::from_bytes(&signature))
        .map_err(|_| refuse("its signature does not verify with the verifying key".into()))?;
    Ok(VerifiedModel { entry, path, manifest: file, index })
}
