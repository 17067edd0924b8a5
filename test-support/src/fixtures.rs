//! The wire-contract fixtures kept in the repository's `data/` directory: the
//! signature vectors (`data/vectors/signatures.json`) and the example event bodies
//! (`data/events/*.json`).

use std::path::PathBuf;

use base64::Engine as _;

/// The repository's `data/` directory.
pub fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data");
    assert!(
        dir.join("vectors/signatures.json").is_file(),
        "the fixtures are missing: expected them at {}",
        dir.display()
    );
    dir
}

/// One case of `vectors/signatures.json`.
#[derive(Debug, Clone)]
pub struct Vector {
    /// What the case shows.
    pub name: String,
    /// The secret to verify with.
    pub secret: String,
    /// The raw body.
    pub body: Vec<u8>,
    /// The `X-NotMeta-Signature` value, or `None` for no header.
    pub signature_header: Option<String>,
    /// The outcome: `valid`, `mismatch`, `malformed` or `missing`.
    pub expect: String,
}

/// Every case of `data/vectors/signatures.json`, in file order.
pub fn signature_vectors() -> Vec<Vector> {
    let text = std::fs::read_to_string(data_dir().join("vectors/signatures.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = doc["cases"].as_array().expect("cases array");
    assert!(!cases.is_empty());
    cases
        .iter()
        .map(|c| Vector {
            name: c["name"].as_str().unwrap().to_owned(),
            secret: c["secret"].as_str().unwrap().to_owned(),
            body: base64::engine::general_purpose::STANDARD
                .decode(c["body_base64"].as_str().unwrap())
                .unwrap(),
            signature_header: c["signature_header"].as_str().map(str::to_owned),
            expect: c["expect"].as_str().unwrap().to_owned(),
        })
        .collect()
}

/// Every example event body of `data/events/`, as `(file name, bytes)`, sorted by
/// name.
pub fn example_events() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(data_dir().join("events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The bytes of one example event, by file name (`evt_6.message.received.json`).
pub fn example_event(name: &str) -> Vec<u8> {
    let path = data_dir().join("events").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
