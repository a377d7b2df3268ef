//! Shared by the addon's test binaries: where the crate and the
//! `libfarewell_node.so` cargo built for this run are.

use std::path::PathBuf;

/// This crate's directory.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put `libfarewell_node.so` for this run: beside this test
/// binary (`target/<profile>/deps`) or one folder up. Cargo builds a
/// cdylib-only library for its package's integration tests, so it is there.
pub fn addon() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("the test binary's directory");
    [deps, deps.parent().unwrap_or(deps)]
        .iter()
        .map(|dir| dir.join("libfarewell_node.so"))
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            panic!(
                "libfarewell_node.so not found beside {}: build it with `cargo build -p farewell-node`",
                exe.display()
            )
        })
}
