//! One module per subcommand: its clap arguments, its `--help` text and its `run`.

pub mod bench;
pub mod lab;
pub mod serve_http;
