//! One module per subcommand. Each exposes its clap arguments and a `run` function returning
//! the process exit code (0 ok, 1 answered-but-failing) or a `miette::Report` (exit 2).

pub mod announce;
pub mod bench;
pub mod check;
pub mod collect;
pub mod diff;
pub mod gen;
pub mod ingress;
pub mod io;
pub mod lab;
pub mod meta;
pub mod netfilter;
pub mod reach;
pub mod snapshot;
pub mod trace;
