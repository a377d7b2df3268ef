//! Integration tests of `farewell lab`: the binary runs the matrix (and a
//! churn) on this kernel and prints it. These check the report's shape, the
//! claims the kernel's table settles, the HTML page, and the cleanup of
//! network namespaces; they never assert timings.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const POLICIES: [&str; 7] = [
    "plain",
    "lingering",
    "lingering-reset",
    "fin-then-reset",
    "abort",
    "silent",
    "peer-first",
];

const BEHAVIOURS: [&str; 9] = [
    "cooperative",
    "slow-reader",
    "ignores",
    "never-handshakes",
    "never-reads",
    "floods",
    "resets-first",
    "half-closes-first",
    "vanishes",
];

const FIELDS: [&str; 18] = [
    "policy",
    "behaviour",
    "path",
    "goodbye_bytes",
    "connections",
    "server_time_wait",
    "client_time_wait",
    "goodbye_delivered_pct",
    "goodbye_acked_pct",
    "bytes_lost",
    "release_ms_median",
    "release_ms_p99",
    "release_ms_max",
    "release_ms",
    "leftover_sockets",
    "leftover_states",
    "paths",
    "skipped",
];

fn farewell(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args(args)
        .output()
        .expect("the farewell binary runs")
}

/// True when this test process can make network namespaces, as the lab
/// decides it (CAP_NET_ADMIN, CAP_SYS_ADMIN, the ip tool).
fn netns_available() -> bool {
    farewell_lab::lab::netns::unavailable().is_none()
}

/// The network namespaces named for process `pid`, by `ip netns list`
/// (empty without the ip tool: then the lab made none either).
fn namespaces_of(pid: u32) -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    let prefix = format!("farewell-{pid}-");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// Runs the binary with `args`, returns its output and pid.
fn run_lab(args: &[&str]) -> (std::process::Output, u32) {
    let child = Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the farewell binary starts");
    let pid = child.id();
    (child.wait_with_output().expect("farewell lab ends"), pid)
}

/// The cell of `policy` × `behaviour` on the path named `path`.
fn cell_on<'a>(report: &'a Value, path: &str, policy: &str, behaviour: &str) -> &'a Value {
    report["cells"]
        .as_array()
        .expect("cells is an array")
        .iter()
        .find(|c| c["policy"] == policy && c["behaviour"] == behaviour && c["path"] == path)
        .unwrap_or_else(|| panic!("no cell for {policy} × {behaviour} on {path}"))
}

/// The cell of `policy` × `behaviour` on loopback.
fn cell<'a>(report: &'a Value, policy: &str, behaviour: &str) -> &'a Value {
    cell_on(report, "loopback", policy, behaviour)
}

/// The names of the report's paths, in order.
fn path_names(report: &Value) -> Vec<String> {
    report["paths"]
        .as_array()
        .expect("paths is an array")
        .iter()
        .map(|p| p["name"].as_str().expect("a path has a name").to_owned())
        .collect()
}

fn churn<'a>(report: &'a Value, policy: &str) -> &'a Value {
    report["churn"]
        .as_array()
        .expect("churn is an array")
        .iter()
        .find(|c| c["policy"] == policy)
        .unwrap_or_else(|| panic!("no churn for {policy}"))
}

/// Checks that `html` is well-formed (every element closed, in order) and
/// returns how many `<svg>` elements it has; fails on scripts or anything
/// fetched from elsewhere.
fn svg_count_of_wellformed_page(html: &str) -> usize {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(html);
    let mut svgs = 0;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                assert_ne!(name, "script", "the page has no scripts");
                for attr in e.attributes() {
                    let attr = attr.expect("well-formed attribute");
                    let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
                    let value = String::from_utf8_lossy(&attr.value).into_owned();
                    assert!(
                        key == "xmlns" || !value.contains("://"),
                        "{name} {key}={value:?} would fetch from elsewhere"
                    );
                }
                if name == "svg" {
                    svgs += 1;
                }
            }
            Ok(Event::Eof) => return svgs,
            Ok(_) => {}
            Err(e) => panic!(
                "the report is not well-formed at byte {}: {e}",
                reader.buffer_position()
            ),
        }
    }
}

/// One small lab run (2 connections per cell, a 1 s churn at 50/s, a report)
/// serves all the checks below: it takes seconds.
#[test]
fn lab_json_reports_the_whole_matrix_the_churn_and_an_html_page() {
    let dir = std::env::temp_dir().join(format!("farewell-lab-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir.to_str().expect("utf-8 temp dir").to_owned();
    #[rustfmt::skip]
    let (out, pid) = run_lab(&[
        "lab", "--json", "--connections", "2",
        "--churn", "--duration", "1s", "--rate", "50",
        "--report", &dir_arg,
    ]);
    assert!(
        out.status.success(),
        "farewell lab failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });

    // No namespace of the run is left behind.
    assert_eq!(namespaces_of(pid), Vec::<String>::new(), "namespaces left");

    // The header: the kernel and its TIME-WAIT settings.
    let kernel = &report["kernel"];
    for key in [
        "release",
        "tcp_fin_timeout",
        "tcp_tw_reuse",
        "tcp_max_tw_buckets",
        "ip_local_port_range",
    ] {
        assert!(kernel.get(key).is_some(), "kernel lacks {key}: {kernel}");
    }

    // The paths: loopback, and a slow path where this machine can make one
    // (the default); each with its mechanism and measured round-trip time.
    let paths = path_names(&report);
    if netns_available() {
        assert_eq!(paths, ["loopback", "slow"], "default paths");
        assert!(report["warnings"].as_array().expect("warnings").is_empty());
    } else {
        assert_eq!(paths, ["loopback"], "default paths");
        let warnings = report["warnings"].to_string();
        assert!(warnings.contains("hides"), "loopback warning: {warnings}");
    }
    for p in report["paths"].as_array().expect("paths") {
        for key in ["name", "spec", "mechanism", "rtt_ms"] {
            assert!(p.get(key).is_some(), "path lacks {key}: {p}");
        }
        assert!(p["rtt_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{p}");
    }

    // A cell for every path × policy × behaviour, each with every field; a
    // cell either ran every connection or says why it was skipped.
    let cells = report["cells"].as_array().expect("cells is an array");
    assert_eq!(cells.len(), paths.len() * POLICIES.len() * BEHAVIOURS.len());
    for (path, policy, behaviour) in paths.iter().flat_map(|path| {
        POLICIES
            .iter()
            .flat_map(move |policy| BEHAVIOURS.iter().map(move |b| (path, *policy, *b)))
    }) {
        let c = cell_on(&report, path, policy, behaviour);
        for field in FIELDS {
            assert!(
                c.get(field).is_some(),
                "{policy} × {behaviour} lacks {field}: {c}"
            );
        }
        assert!(c["paths"].is_object(), "{c}");
        match c["skipped"].as_str() {
            None => {
                assert_eq!(
                    c["connections"], 2,
                    "{policy} × {behaviour} did not run both connections: {c}"
                );
                assert_eq!(c["release_ms"].as_array().map(Vec::len), Some(2), "{c}");
            }
            Some(why) => assert!(
                why.starts_with("needs "),
                "{policy} × {behaviour} skipped without a reason: {c}"
            ),
        }
    }

    // Vanished peers ran in namespaces when this machine allows them, and
    // are marked skipped with the reason otherwise — never a silent pass.
    for policy in POLICIES {
        let c = cell(&report, policy, "vanishes");
        if netns_available() {
            assert!(
                c["skipped"].is_null(),
                "{policy} × vanishes did not run: {c}"
            );
        } else {
            assert!(c["skipped"].is_string(), "{policy} × vanishes: {c}");
        }
    }
    if netns_available() {
        // plain sends its FIN into the void: the server's kernel keeps a
        // FIN-WAIT-1 orphan, and the lab reports it as left over.
        let c = cell(&report, "plain", "vanishes");
        assert_eq!(
            c["leftover_states"]["FIN-WAIT-1"], 2,
            "plain × vanishes: {c}"
        );
        // peer-first resets once its grace ends: nothing is left.
        let c = cell(&report, "peer-first", "vanishes");
        assert_eq!(c["leftover_sockets"], 0, "peer-first × vanishes: {c}");
    } else {
        farewell_lab::support::tools::skip(
            "the vanished-peer checks of the lab's JSON test",
            &farewell_lab::lab::netns::unavailable().unwrap_or_default(),
        );
    }

    // peer-first never leaves TIME-WAIT on the server, whatever the peer
    // does, and delivers the whole large last message to a slow reader, on
    // every path.
    for path in &paths {
        for behaviour in BEHAVIOURS {
            let c = cell_on(&report, path, "peer-first", behaviour);
            assert_eq!(
                c["server_time_wait"], 0,
                "peer-first × {behaviour} on {path}: {c}"
            );
        }
        let c = cell_on(&report, path, "peer-first", "slow-reader");
        assert!(c["goodbye_bytes"].as_u64().unwrap_or(0) > 100_000, "{c}");
        assert_eq!(
            c["bytes_lost"], 0,
            "peer-first × slow-reader on {path}: {c}"
        );
        // abort's reset discards what the large last message had not yet delivered.
        let c = cell_on(&report, path, "abort", "slow-reader");
        assert!(
            c["bytes_lost"].as_u64().unwrap_or(0) > 0,
            "abort × slow-reader on {path}: {c}"
        );
    }

    // plain sends the first FIN, so a cooperative peer (which closes after
    // reading the goodbye) and one that ignores it leave the server in
    // TIME-WAIT (F1).
    for behaviour in ["cooperative", "ignores"] {
        let c = cell(&report, "plain", behaviour);
        assert!(
            c["server_time_wait"].as_u64().unwrap_or(0) > 0,
            "plain × {behaviour}: {c}"
        );
    }

    // One verdict per path and policy.
    assert_eq!(
        report["verdicts"].as_array().map(Vec::len),
        Some(POLICIES.len() * paths.len())
    );

    // The churn, by the census samples: plain piles up server TIME-WAIT,
    // peer-first never has any.
    let plain = churn(&report, "plain");
    let samples = |c: &Value| c["samples"].as_array().expect("samples").clone();
    assert!(
        samples(plain)
            .iter()
            .any(|s| s["server_time_wait"].as_u64().unwrap_or(0) > 0),
        "plain's churn shows no server TIME-WAIT: {plain}"
    );
    let peer_first = churn(&report, "peer-first");
    let pf = samples(peer_first);
    assert!(
        pf.len() >= 2,
        "peer-first's churn was sampled: {peer_first}"
    );
    for s in &pf {
        assert_eq!(s["server_time_wait"], 0, "peer-first churn sample {s}");
    }
    assert!(
        peer_first["connections"].as_u64().unwrap_or(0) > 0,
        "{peer_first}"
    );

    // The HTML report: well-formed, self-contained, one <svg> per chart
    // (release times from the matrix, TIME-WAIT over time from the churn).
    let html = std::fs::read_to_string(dir.join("index.html")).expect("DIR/index.html written");
    assert_eq!(svg_count_of_wellformed_page(&html), 2, "two charts");
    // Each path's matrix as a policy × behaviour grid.
    assert_eq!(
        html.matches("<table class=\"grid\"").count(),
        paths.len(),
        "one grid per path"
    );
    for path in &paths {
        assert!(
            html.contains(&format!("id=\"path-{path}\"")),
            "grid of {path}"
        );
    }
    for policy in POLICIES {
        assert!(html.contains(policy), "the page names {policy}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ctrl-C while the vanished peers' namespaces exist: the lab exits with
/// 130 and deletes them; a namespace left by a killed run is deleted too.
#[test]
fn lab_interrupted_cleans_up_its_namespaces_and_stale_ones() {
    if !netns_available() {
        farewell_lab::support::tools::skip(
            "lab_interrupted_cleans_up_its_namespaces_and_stale_ones",
            &farewell_lab::lab::netns::unavailable().unwrap_or_default(),
        );
        return;
    }
    // A namespace named for a process that no longer exists.
    let mut gone = Command::new("true").spawn().expect("run true");
    let dead = gone.id();
    gone.wait().expect("true ends");
    let stale = format!("farewell-{dead}-0-a");
    let added = Command::new("ip")
        .args(["netns", "add", &stale])
        .status()
        .expect("ip runs");
    assert!(added.success(), "ip netns add {stale}");

    // A long grace keeps the vanished column's namespaces for seconds.
    let mut child = Command::new(env!("CARGO_BIN_EXE_farewell"))
        .args(["lab", "--json", "--connections", "1", "--grace", "3s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the farewell binary starts");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while namespaces_of(pid).is_empty() {
        if Instant::now() > deadline || child.try_wait().expect("try_wait").is_some() {
            let _ = child.kill();
            panic!("the lab never made its namespaces");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let signalled = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the lab did not stop after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr);
    assert_eq!(
        status.code(),
        Some(130),
        "exit status after SIGINT: {stderr}"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(namespaces_of(pid), Vec::<String>::new(), "namespaces left");
    // This run, or a lab run of a test beside it, removed it at its start.
    assert_eq!(
        namespaces_of(dead),
        Vec::<String>::new(),
        "stale namespace kept"
    );
}

#[test]
fn lab_help_explains_how_to_read_the_table() {
    let out = farewell(&["lab", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "server TW",
        "delivered",
        "leftover",
        "--connections",
        "--json",
        "--grace",
        "--heavy",
        "--heavy-threshold",
        "heavy client",
        "light client",
    ] {
        assert!(help.contains(word), "help lacks {word:?}:\n{help}");
    }
}

#[test]
fn lab_rejects_an_unknown_path_naming_the_known_ones() {
    let out = farewell(&["lab", "--path", "loopback,lan"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown path \"lan\""), "{err}");
    assert!(err.contains("loopback, slow, wan"), "{err}");
}

#[test]
fn lab_rejects_a_bad_grace_with_a_hint() {
    let out = farewell(&["lab", "--grace", "soon"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("300ms"), "no hint in: {err}");
}
