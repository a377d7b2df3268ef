//! The committed `include/farewell.h` is what cbindgen makes of the source
//! now, and it compiles as C99 and C++ without a warning.
//!
//! The header is committed (C users read it without building anything) and
//! generated here rather than by a build script: `cargo build` then needs no
//! cbindgen and never writes into the source tree. One step follows cbindgen:
//! negative `#define`s get parentheses. After changing the C API,
//! regenerate it with `FAREWELL_BLESS_HEADER=1 cargo test -p farewell-ffi --test header`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generated() -> String {
    let dir = crate_dir();
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("cbindgen parses the crate")
        .write(&mut out);
    let header = String::from_utf8(out).expect("the header is UTF-8");
    parenthesize_negative_defines(&header)
}

/// `#define FW_ERR_NULL -1` becomes `#define FW_ERR_NULL (-1)`, so that
/// `x-FW_ERR_NULL` means what it says (cbindgen drops the Rust source's parentheses).
fn parenthesize_negative_defines(header: &str) -> String {
    let mut out = String::with_capacity(header.len() + 64);
    for line in header.split_inclusive('\n') {
        let mut parts = line.trim_end_matches('\n').splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("#define"), Some(name), Some(value)) if value.starts_with('-') => {
                out.push_str(&format!("#define {name} ({value})\n"));
            }
            _ => out.push_str(line),
        }
    }
    out
}

#[test]
fn committed_header_is_up_to_date() {
    let path = crate_dir().join("include/farewell.h");
    let fresh = generated();
    if std::env::var_os("FAREWELL_BLESS_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("write include/farewell.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale: regenerate it with `FAREWELL_BLESS_HEADER=1 cargo test -p farewell-ffi --test header`",
        path.display()
    );
}

/// Compiles `source` (which includes the header) with `compiler` and `flags`.
fn compiles(test: &str, compiler: &str, file: &str, source: &str, flags: &[&str]) {
    if !farewell_testkit::support::tools::require(test, &[compiler]) {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ffi-header");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(file);
    std::fs::write(&file, source).unwrap();
    let output = Command::new(compiler)
        .args(flags)
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg("-fsyntax-only")
        .arg(&file)
        .output()
        .expect("run the compiler");
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{compiler} {flags:?} on farewell.h:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

const USES: &str = r#"
#include "farewell.h"
#include <stdio.h>

static void on_outcome(const fw_outcome *o, void *user) {
    (void)user;
    if (FW_HAS_FIELD(o, fw_outcome, peer))
        printf("%s %s %s\n", o->ending_name, fw_time_wait_name(o->time_wait), o->peer);
}

int main(void) {
    fw_options *options = fw_options_new();
    fw_closer *closer = NULL;
    fw_stats stats;
    fw_options_set_policy(options, "peer-first");
    fw_options_set_outcome_callback(options, on_outcome, NULL);
    if (fw_closer_new(options, &closer) != FW_OK) return 1;
    fw_options_free(options);
    stats.size = sizeof stats;
    fw_closer_stats(closer, &stats);
    printf("%s %s %d\n", fw_version(), fw_strerror(fw_close(closer, -1, NULL, 0)), (int)FW_GOODBYE_MAX);
    return fw_closer_free(closer, 0);
}
"#;

#[test]
fn header_compiles_as_c99_without_warnings() {
    compiles(
        "header_compiles_as_c99_without_warnings",
        "cc",
        "uses.c",
        USES,
        &["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"],
    );
}

#[test]
fn header_compiles_as_cpp_without_warnings() {
    compiles(
        "header_compiles_as_cpp_without_warnings",
        "c++",
        "uses.cpp",
        USES,
        &["-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic"],
    );
}
