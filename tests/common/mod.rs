//! Access to the wire-contract fixtures kept in the repository's `data/` directory.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use base64::Engine as _;

/// `data/`, the directory holding SPEC vectors and example events.
pub fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data");
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
    pub name: String,
    pub secret: String,
    pub body: Vec<u8>,
    pub signature_header: Option<String>,
    pub expect: String,
}

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

/// Every example event body of `events/`, as `(file name, bytes)`, sorted by name.
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
