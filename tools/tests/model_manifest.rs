//! The model manifest: signing is an operator step with a key the tests make themselves; a model
//! whose file, hash or signature does not match is refused before ONNX Runtime sees it.

use std::path::Path;

use kestrel_flight::models::{ModelError, load_verified};
use kestrel_flight::onnx_runtime::cached_runtime_dir;
use kestrel_tools::signing::{generate_key_pair, sign};

const MANIFEST: &str = r#"# test manifest
[[models]]
name = "sigmoid"
file = "sigmoid.onnx"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
signature = "00"
classes = ["x"]
input_size = 5
input_channels = 4
min_score = 0.25
max_iou = 0.5
card = "sigmoid.md"
"#;

/// A manifest with one model, signed by a fresh key; returns the verifying key's path.
fn signed(dir: &Path) -> std::path::PathBuf {
    std::fs::copy(cached_runtime_dir().join("models/sigmoid.onnx"), dir.join("sigmoid.onnx")).expect("model");
    std::fs::write(dir.join("models.toml"), MANIFEST).expect("manifest");
    let public = generate_key_pair(&dir.join("signing.key")).expect("key pair");
    std::fs::write(dir.join("signing.pub"), &public).expect("public key");
    sign(&dir.join("models.toml"), "sigmoid", &dir.join("signing.key"), &dir.join("signing.pub")).expect("sign");
    dir.join("signing.pub")
}

#[test]
fn a_signed_model_verifies_and_the_manifest_keeps_its_comments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let public = signed(dir.path());
    let model = load_verified(&dir.path().join("models.toml"), &public, "sigmoid").expect("verified");
    assert_eq!(model.entry.classes.map(|c| c.into_inner()), Some(vec!["x".to_owned()]));
    let text = std::fs::read_to_string(dir.path().join("models.toml")).expect("read");
    assert!(text.starts_with("# test manifest"), "{text}");
    let key = std::fs::metadata(dir.path().join("signing.key")).expect("key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key.permissions().mode() & 0o777, 0o600, "the signing key is private");
}

#[test]
fn a_changed_model_a_forged_signature_or_another_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let public = signed(dir.path());
    let manifest = dir.path().join("models.toml");

    let mut bytes = std::fs::read(dir.path().join("sigmoid.onnx")).expect("read");
    let original = bytes.clone();
    bytes[10] ^= 1;
    std::fs::write(dir.path().join("sigmoid.onnx"), &bytes).expect("tamper");
    let error = load_verified(&manifest, &public, "sigmoid").expect_err("changed model");
    assert!(matches!(error, ModelError::Refused { .. }) && error.to_string().contains("SHA-256"), "{error}");
    std::fs::write(dir.path().join("sigmoid.onnx"), &original).expect("restore");

    let text = std::fs::read_to_string(&manifest).expect("read");
    let signature = text.lines().find(|l| l.starts_with("signature")).expect("signature line").to_owned();
    // change the signature's last hex digit
    let last = signature.len() - 2;
    let digit = if &signature[last..=last] == "0" { "1" } else { "0" };
    let forged = text.replace(&signature, &format!("{}{digit}{}", &signature[..last], &signature[last + 1..]));
    std::fs::write(&manifest, forged).expect("forge");
    let error = load_verified(&manifest, &public, "sigmoid").expect_err("forged signature");
    assert!(error.to_string().contains("signature does not verify"), "{error}");
    std::fs::write(&manifest, &text).expect("restore");

    let other = tempfile::tempdir().expect("tempdir");
    let stranger = generate_key_pair(&other.path().join("k")).expect("key");
    std::fs::write(other.path().join("k.pub"), stranger).expect("write");
    let error = load_verified(&manifest, &other.path().join("k.pub"), "sigmoid").expect_err("another key");
    assert!(error.to_string().contains("signature does not verify"), "{error}");

    load_verified(&manifest, &public, "sigmoid").expect("still fine with the right key");
}

#[test]
fn signing_with_the_verifying_key_or_another_pairs_key_is_refused_and_the_manifest_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let public = signed(dir.path());
    let manifest = dir.path().join("models.toml");
    let before = std::fs::read_to_string(&manifest).expect("read");
    let error = sign(&manifest, "sigmoid", &public, &public).expect_err("the verifying key as the signing key");
    assert!(error.to_string().contains("is the verifying key"), "{error}");
    generate_key_pair(&dir.path().join("other.key")).expect("another pair");
    let error = sign(&manifest, "sigmoid", &dir.path().join("other.key"), &public).expect_err("another pair");
    assert!(error.to_string().contains("not the signing key of the verifying key"), "{error}");
    assert_eq!(std::fs::read_to_string(&manifest).expect("read"), before);
}

#[test]
fn an_unsigned_entry_refuses_that_model_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let public = signed(dir.path());
    let manifest = dir.path().join("models.toml");
    let text = std::fs::read_to_string(&manifest).expect("read");
    let unsigned = MANIFEST
        .replace("# test manifest\n", "")
        .replace("name = \"sigmoid\"", "name = \"unsigned\"")
        .lines()
        .filter(|l| !l.starts_with("sha256") && !l.starts_with("signature"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&manifest, format!("{text}\n{unsigned}\n")).expect("write");
    load_verified(&manifest, &public, "sigmoid").expect("the signed model still loads");
    let error = load_verified(&manifest, &public, "unsigned").expect_err("not signed").to_string();
    assert!(error.contains("key `models[1].sha256`") && error.contains("is not signed"), "{error}");
}

#[test]
fn a_malformed_manifest_is_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let public = signed(dir.path());
    let manifest = dir.path().join("models.toml");
    let text = std::fs::read_to_string(&manifest).expect("read").replace("max_iou = 0.5", "max_iou = 0.5\nmax_io = 1");
    std::fs::write(&manifest, text).expect("write");
    let error = load_verified(&manifest, &public, "sigmoid").expect_err("unknown key");
    let message = error.to_string();
    assert!(message.contains("models.toml:") && message.contains("key `models[0].max_io`"), "{message}");
}

#[test]
fn only_the_model_asked_for_is_verified_and_a_damaged_other_is_refused_when_asked_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let public = signed(dir.path());
    let manifest = dir.path().join("models.toml");
    // a second model whose file is missing, under a copy of the first one's entry
    let text = std::fs::read_to_string(&manifest).expect("read");
    let second = text[text.find("[[models]]").expect("entry")..]
        .replace("name = \"sigmoid\"", "name = \"missing\"")
        .replace("file = \"sigmoid.onnx\"", "file = \"missing.onnx\"");
    std::fs::write(&manifest, format!("{text}\n{second}")).expect("write");
    load_verified(&manifest, &public, "sigmoid").expect("the model asked for still loads");
    let error = load_verified(&manifest, &public, "missing").expect_err("no file");
    assert!(error.to_string().contains("missing.onnx"), "{error}");
    let error = load_verified(&manifest, &public, "nowhere").expect_err("not in the manifest");
    assert_eq!(error.to_string(), "no model named `nowhere` in the manifest");
}
