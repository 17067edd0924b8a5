//! The fixtures in `data/` are byte-for-byte the reference copy of the wire contract's
//! vectors and example events, where that copy sits beside the repository
//! (`../shared/vectors` and `../shared/events`). Without it, the test says
//! it skipped and passes: a clone on its own (CI's included) has nothing to compare with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every file directly inside `dir`, by name, with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

#[test]
fn data_is_identical_to_the_reference_fixtures() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let reference = root.join("../shared");
    if !reference.is_dir() {
        eprintln!(
            "skipped: no reference copy at {} to compare data/ with",
            reference.display()
        );
        return;
    }
    for sub in ["vectors", "events"] {
        let ours = files(&root.join("data").join(sub));
        let theirs = files(&reference.join(sub));
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "data/{sub} and ../shared/{sub} hold different files"
        );
        for (name, bytes) in &ours {
            assert!(
                *bytes == theirs[name],
                "data/{sub}/{name} differs from ../shared/{sub}/{name}"
            );
        }
    }
}
