//! One module per subcommand: its clap arguments, its `--help` text and its `run`.

pub mod bench;
pub mod lab;
pub mod load;
pub(crate) mod progress;
pub mod serve;
pub mod serve_http;
pub mod watch;
