//! The progress bar every long-running subcommand shows on stderr.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar of `len` `unit`s on stderr, drawn only when stderr is a terminal
/// (hidden otherwise, so logs and CI output stay clean).
pub fn bar(len: u64, unit: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {{bar:40}} {{pos}}/{{len}} {unit} {{elapsed}}"
        ))
        .expect("valid template"),
    );
    bar
}
