//! A model file that Ultralytics exported carries metadata (`author`, `task`, `imgsz`, `names`,
//! `channels`, `end2end`): flight reads it through ONNX Runtime, fills what the manifest leaves out,
//! gives the model Ultralytics' own preprocessing, and refuses a contradiction at load, naming the
//! manifest's file, line and key. The test writes the metadata into a copy of the project's own
//! vessel model (a YOLO-layout graph, `[1, 5, N]`), as Ultralytics' exporter does: one
//! `metadata_props` entry per key, appended to the ONNX `ModelProto`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use kestrel_flight::config::ExecutionProviderKind;
use kestrel_flight::model_io::{ModelIo, OutputLayout, Preprocess, resolve_session};
use kestrel_flight::models::{ModelError, load_verified};
use kestrel_flight::onnx_runtime::OnnxRuntime;
use kestrel_tools::signing::{generate_key_pair, sign};

/// Protobuf bytes of one `ModelProto.metadata_props` entry (field 14, a `StringStringEntryProto`
/// of key (1) and value (2)): appended to a serialised message, it adds the entry.
fn metadata_entry(key: &str, value: &str) -> Vec<u8> {
    fn varint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    let mut entry = Vec::new();
    for (tag, text) in [(0x0a, key), (0x12, value)] {
        entry.push(tag);
        varint(text.len(), &mut entry);
        entry.extend_from_slice(text.as_bytes());
    }
    let mut out = vec![0x72];
    varint(entry.len(), &mut out);
    out.extend(entry);
    out
}

/// The vessel model with `metadata`, signed into a manifest whose entry has `keys` besides the
/// ones every entry needs; returns what `flight` would load.
fn exported(dir: &Path, metadata: &[(&str, &str)], keys: &str) -> Result<ModelIo, ModelError> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut bytes = std::fs::read(root.join("models/vessels-s2.onnx")).expect("vessel model");
    for (key, value) in metadata {
        bytes.extend(metadata_entry(key, value));
    }
    std::fs::write(dir.join("exported.onnx"), bytes).expect("write model");
    let manifest = format!(
        "[[models]]\nname = \"exported\"\nfile = \"exported.onnx\"\nsha256 = \"00\"\nsignature = \"00\"\n{keys}min_score = 0.25\nmax_iou = 0.5\ncard = \"card.md\"\n"
    );
    std::fs::write(dir.join("models.toml"), manifest).expect("manifest");
    static KEYS: AtomicUsize = AtomicUsize::new(0);
    let secret = dir.join(format!("signing-{}.key", KEYS.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(dir.join("signing.pub"), generate_key_pair(&secret).expect("key pair")).expect("public key");
    sign(&dir.join("models.toml"), "exported", &secret, &dir.join("signing.pub")).expect("sign");
    let model = load_verified(&dir.join("models.toml"), &dir.join("signing.pub"), "exported")?;
    let runtime = OnnxRuntime::get().expect("ONNX Runtime");
    let session = runtime.session(&model.path, &[ExecutionProviderKind::Cpu], 1).expect("session").session;
    resolve_session(&model, &session)
}

const DETECT: [(&str, &str); 5] = [
    ("author", "Ultralytics"),
    ("task", "detect"),
    ("imgsz", "[128, 128]"),
    ("names", "{0: 'vessel'}"),
    ("channels", "2"),
];

#[test]
fn an_ultralytics_export_fills_the_manifest_and_gets_ultralytics_preprocessing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let io = exported(dir.path(), &DETECT, "").expect("loads");
    assert_eq!(
        io,
        ModelIo {
            classes: vec!["vessel".into()],
            input_size: 128,
            input_channels: 2,
            preprocess: Preprocess::ULTRALYTICS,
            layout: OutputLayout::Candidates,
        }
    );
    // the manifest may say otherwise for any step of the preprocessing
    let io = exported(dir.path(), &DETECT, "input_range = [0.0, 10000.0]\nletterbox = \"corner\"\n").expect("loads");
    assert_eq!(io.preprocess.input_range, Some((0.0, 10000.0)));
    assert_eq!(
        (io.preprocess.letterbox, io.preprocess.pad),
        (kestrel_flight::model_io::Letterbox::Corner, 114.0 / 255.0)
    );
    // a file of another exporter gets flight's own, and needs the manifest to say its shape
    let io =
        exported(dir.path(), &[], "classes = [\"vessel\"]\ninput_size = 128\ninput_channels = 2\n").expect("loads");
    assert_eq!(io.preprocess, Preprocess::FLIGHT);
    let error = exported(dir.path(), &[], "").expect_err("no shape anywhere").to_string();
    assert!(error.contains("models[0].input_size") && error.contains("the file does not state it"), "{error}");
}

#[test]
fn a_contradiction_between_the_manifest_and_the_export_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = exported(dir.path(), &DETECT, "input_size = 256\n").expect_err("two sizes").to_string();
    assert!(
        error.contains("models.toml:6:")
            && error.contains("key `models[0].input_size`")
            && error.contains("256")
            && error.contains("imgsz"),
        "{error}"
    );
    let error = exported(dir.path(), &DETECT, "classes = [\"ship\"]\n").expect_err("other names").to_string();
    assert!(error.contains("models[0].classes") && error.contains("names"), "{error}");
    let error = exported(dir.path(), &DETECT, "input_channels = 3\n").expect_err("other channels").to_string();
    assert!(error.contains("models[0].input_channels"), "{error}");
    let error = exported(dir.path(), &DETECT, "input_range = [5.0, 5.0]\n").expect_err("no range").to_string();
    assert!(error.contains("models[0].input_range"), "{error}");
}

#[test]
fn exports_flight_cannot_run_are_refused_at_load_saying_which_export_to_make() {
    let dir = tempfile::tempdir().expect("tempdir");
    let with = |key: &str, value: &'static str| {
        let mut metadata = DETECT.to_vec();
        metadata.retain(|(k, _)| *k != key);
        metadata.push((Box::leak(key.to_owned().into_boxed_str()), value));
        metadata
    };
    let error = exported(dir.path(), &with("task", "segment"), "").expect_err("segmentation").to_string();
    assert!(error.contains("segmentation") && error.contains("export a detection model"), "{error}");
    let error = exported(dir.path(), &with("imgsz", "[96, 128]"), "").expect_err("rectangular").to_string();
    assert!(error.contains("[96, 128]") && error.contains("square"), "{error}");
    // says end to end, gives candidates: the output does not fit the layout it claims
    let error = exported(dir.path(), &with("end2end", "True"), "").expect_err("not end to end").to_string();
    assert!(error.contains("[batch, detections, 6]"), "{error}");
    // the vessel model takes 128 px: an export that claims another size is refused by its input
    let error = exported(dir.path(), &with("imgsz", "[640, 640]"), "").expect_err("other size").to_string();
    assert!(error.contains("is not 640 x 640"), "{error}");
}
