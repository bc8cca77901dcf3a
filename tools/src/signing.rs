//! Signing models for the manifest: an operator step on the ground (`flight-tools keygen`,
//! `flight-tools sign-model`). The signing key never goes to the spacecraft, so none of this is
//! in the flight binary; flight only verifies (`kestrel_flight::models`).

use std::path::Path;

use ed25519_dalek::{Signer, SigningKey};
use kestrel_flight::models::{ModelError, file_sha256, hex, read_key, verifying_key};

/// Makes a signing key (written to `secret`, owner-only) and returns the verifying key's hex.
pub fn generate_key_pair(secret: &Path) -> Result<String, ModelError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| ModelError::Key { path: secret.to_path_buf(), message: e.to_string() })?;
    let key = SigningKey::from_bytes(&seed);
    write_private(secret, &hex(&seed))
        .map_err(|e| ModelError::Io { path: secret.to_path_buf(), message: e.to_string() })?;
    Ok(hex(key.verifying_key().as_bytes()))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?.write_all(text.as_bytes())
}

/// The ed25519 signature of `digest` (a model file's SHA-256) with the signing key in `secret`.
pub fn sign_digest(secret: &Path, digest: &[u8; 32]) -> Result<[u8; 64], ModelError> {
    let key = SigningKey::from_bytes(&read_key::<32>(secret, "signing key")?);
    Ok(key.sign(digest).to_bytes())
}

/// Signs model `name` of the manifest with the signing key in `secret`: writes the file's SHA-256
/// and the signature into the manifest, keeping its comments and layout. The signature must
/// verify with `verifying_key` (the one flight checks with): a verifying key given as the signing
/// key, or the signing key of another pair, is refused before the manifest is touched.
pub fn sign(
    manifest: &Path,
    name: &str,
    secret: &Path,
    verifying_key_file: &Path,
) -> Result<(String, String), ModelError> {
    let public = verifying_key(verifying_key_file)?;
    let given = read_key::<32>(secret, "signing key")?;
    let refuse = |message: String| ModelError::Key { path: secret.to_path_buf(), message };
    if given == public.to_bytes() {
        return Err(refuse(format!(
            "this is the verifying key `{}`, not the signing key; give the file `flight-tools keygen --secret` wrote",
            verifying_key_file.display()
        )));
    }
    if SigningKey::from_bytes(&given).verifying_key() != public {
        return Err(refuse(format!(
            "not the signing key of the verifying key `{}`: flight would refuse what it signs (a new pair needs \
             its verifying key in place and every model signed again, docs/models.md)",
            verifying_key_file.display()
        )));
    }
    let io = |e: String| ModelError::Io { path: manifest.to_path_buf(), message: e };
    let text = std::fs::read_to_string(manifest).map_err(|e| io(e.to_string()))?;
    let mut document: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| io(e.to_string()))?;
    let models = document["models"].as_array_of_tables_mut().ok_or_else(|| io("no [[models]] tables".into()))?;
    let model = models
        .iter_mut()
        .find(|m| m.get("name").and_then(|n| n.as_str()) == Some(name))
        .ok_or_else(|| ModelError::Unknown(name.to_owned()))?;
    let file = model.get("file").and_then(|f| f.as_str()).ok_or_else(|| io(format!("model `{name}` has no file")))?;
    let digest = file_sha256(&manifest.parent().unwrap_or(Path::new(".")).join(file))?;
    let signature = hex(&sign_digest(secret, &digest)?);
    model["sha256"] = toml_edit::value(hex(&digest));
    model["signature"] = toml_edit::value(signature.clone());
    std::fs::write(manifest, document.to_string()).map_err(|e| io(e.to_string()))?;
    Ok((hex(&digest), signature))
}
