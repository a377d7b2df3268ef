//! `tests/c/bad_input.c`: every bad input gets its documented code, natively
//! and under valgrind (no leak, no invalid access).

use std::process::Command;

use farewell_testkit::support::tools::require;

use super::{compile, Link};

fn bad_input(test: &str, tools: &[&str]) -> Option<std::path::PathBuf> {
    if !require(test, tools) {
        return None;
    }
    // Static: the test also proves libfarewell_ffi.a links with the documented flags.
    Some(compile("tests/c/bad_input.c", test, Link::Static, &[]))
}

#[test]
fn bad_input_gets_the_documented_codes() {
    let test = "bad_input_gets_the_documented_codes";
    let Some(exe) = bad_input(test, &["cc"]) else {
        return;
    };
    let output = Command::new(&exe).output().expect("run bad_input");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("all as documented: 0 wrong"), "{stdout}");
}

#[test]
fn bad_input_and_shutdown_leak_nothing_under_valgrind() {
    let test = "bad_input_and_shutdown_leak_nothing_under_valgrind";
    let Some(exe) = bad_input(test, &["cc", "valgrind"]) else {
        return;
    };
    let output = Command::new("valgrind")
        .env("FW_TEST_UNDER_VALGRIND", "1")
        .args([
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect,possible",
            "--error-exitcode=99",
        ])
        .arg(&exe)
        .output()
        .expect("run valgrind");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            [
                "LEAK SUMMARY",
                "definitely lost",
                "indirectly lost",
                "possibly lost",
                "still reachable",
                "ERROR SUMMARY",
            ]
            .iter()
            .any(|k| l.contains(k))
        })
        .collect();
    println!("{}", summary.join("\n"));
    assert!(
        output.status.success(),
        "valgrind: {}\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("all as documented: 0 wrong"), "{stdout}");
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
}
