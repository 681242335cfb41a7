//! `kubepath trace SNAPSHOT --from IP[:PORT] --to URL|HOST[:PORT]|IP:PORT`: the main job.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use kubepath_report::trace::{self as report, Style};
use kubepath_sim::trace::{self, Target, TraceRequest, L4};
use miette::miette;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Dot,
    /// The diagram alone (SVG, laid out by kubepath).
    Svg,
    /// One self-contained page: the diagram, the verdicts, and the cited lines on hover.
    Html,
}

#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    /// The snapshot directory (docs/snapshot.md).
    pub snapshot: PathBuf,
    /// The client: IP or IP:PORT.
    #[arg(long)]
    pub from: String,
    /// What it connects to: a URL (http://host/path), HOST[:PORT] or IP:PORT.
    #[arg(long)]
    pub to: String,
    #[arg(long, value_enum, default_value = "tcp")]
    pub proto: Proto,
    /// Apply a change before tracing: 'ip route add|del ...', 'ip rule add|del ...' or
    /// 'sysctl -w key=value', on every node, or on one node with a 'NODE:' prefix. Repeatable.
    #[arg(long = "what-if", value_name = "CHANGE")]
    pub what_if: Vec<String>,
    /// Print JSON (schema kubepath.trace/v1, docs/trace-json.md). Same as --format json.
    #[arg(long)]
    pub json: bool,
    /// Output format: text, json, dot (Graphviz), svg (the diagram) or html (one
    /// self-contained page: the diagram with the cited lines on hover, no network needed).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Text: only the verdict lines.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Text: also every netfilter step and the notes.
    #[arg(short, long)]
    pub verbose: bool,
}

fn parse_from(s: &str) -> miette::Result<(IpAddr, Option<u16>)> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Ok((sa.ip(), Some(sa.port())));
    }
    Err(miette!(
        "--from '{}': expected an IP address or IP:PORT (IPv6 with a port as [ADDR]:PORT)",
        super::io::esc(s)
    ))
}

/// A client address a real connection can come from: not unspecified, broadcast, multicast
/// or loopback, and not source port 0.
fn check_client(s: &str, ip: IpAddr, port: Option<u16>) -> miette::Result<()> {
    if kubepath_sim::check::martian_source(ip) {
        return Err(miette!(
            "--from '{}': {ip} cannot be a client's source address (unspecified, broadcast, multicast or loopback)",
            super::io::esc(s)
        ));
    }
    if port == Some(0) {
        return Err(miette!(
            "--from '{}': source port 0 is not a port a connection uses",
            super::io::esc(s)
        ));
    }
    Ok(())
}

/// A destination a real connection from outside the node can have: not port 0, and not an
/// address that cannot be a service's (unspecified, limited broadcast, multicast, loopback: the
/// trace starts outside the node, where 127.0.0.0/8 is not that node).
fn check_target(shown: &str, target: &Target) -> miette::Result<()> {
    if target.port() == Some(0) {
        return Err(miette!(
            "--to '{}': destination port 0 is not a port a connection uses",
            super::io::esc(shown)
        ));
    }
    let ip = match target {
        Target::Addr { ip, .. } => Some(*ip),
        Target::Url { host, .. } | Target::Host { host, .. } => host.parse().ok(),
    };
    if let Some(ip) = ip {
        if kubepath_sim::check::martian_source(ip) {
            return Err(miette!(
                "--to '{}': {ip} cannot be a service's address (unspecified, broadcast, multicast or loopback)",
                super::io::esc(shown)
            ));
        }
    }
    Ok(())
}

/// `--from` and `--to` checked as one connection's ends, for `trace` and `bench` alike: the
/// client (IP, optional port), the target, and `--to` as it may be shown (userinfo removed).
pub(super) fn client_and_target(
    from: &str,
    to: &str,
) -> miette::Result<(IpAddr, Option<u16>, Target, String)> {
    let (client, client_port) = parse_from(from)?;
    check_client(from, client, client_port)?;
    // The userinfo of a URL (`user:password@`) is never printed: not in errors, the header or
    // the JSON's `request.to` (issue #11).
    let to_shown = kubepath_sim::trace::redact_userinfo(to);
    let target = Target::parse(to).map_err(|e| {
        miette!(
            "--to '{}': {}",
            super::io::esc(&to_shown),
            super::io::esc(&e.to_string())
        )
    })?;
    check_target(&to_shown, &target)?;
    if to_shown != to {
        super::io::err(&format!(
            "note: --to '{}': the URL's userinfo is ignored (credentials play no part in a trace) and never printed\n",
            super::io::esc(&to_shown)
        ));
    }
    // An address in the URL too (`http://[::ffff:10.0.0.1]/` is IPv6, even IPv4-mapped).
    let to_ip = match &target {
        Target::Addr { ip, .. } => Some(*ip),
        Target::Url { host, .. } | Target::Host { host, .. } => host.parse::<IpAddr>().ok(),
    };
    if let Some(ip) = to_ip {
        if ip.is_ipv4() != client.is_ipv4() {
            return Err(miette!(
                "--from {client} and --to {ip} are of different address families: a connection has one"
            ));
        }
    }
    Ok((client, client_port, target, to_shown))
}

pub fn run(args: TraceArgs) -> miette::Result<ExitCode> {
    let (client, client_port, target, to_shown) = client_and_target(&args.from, &args.to)?;
    let changes = super::snapshot::parse_what_ifs(&args.what_if)?;
    let snap = super::snapshot::load(&args.snapshot)?;
    super::snapshot::check_what_if_nodes(&snap, &changes)?;
    let req = TraceRequest {
        client,
        client_port,
        target,
        proto: match args.proto {
            Proto::Tcp => L4::Tcp,
            Proto::Udp => L4::Udp,
        },
        what_if: changes,
    };
    let result = trace::trace(&snap.model, &req);
    let mut json = report::to_json(&req, &to_shown, &result);
    for d in &snap.diagnostics {
        if d.severity == kubepath_ingest::Severity::Error {
            json.snapshot_errors
                .push(format!("{}:{}: {}", d.file, d.line, d.message));
        }
    }
    let format = if args.json { Format::Json } else { args.format };
    match format {
        Format::Json => {
            let s = serde_json::to_string_pretty(&json)
                .map_err(|e| miette!("cannot serialize the trace: {e}"))?;
            super::io::out(&format!("{s}\n"));
        }
        Format::Text => {
            let style = Style {
                color: super::io::color_stdout(),
            };
            let detail = if args.quiet {
                report::Detail::Quiet
            } else if args.verbose {
                report::Detail::Verbose
            } else {
                report::Detail::Normal
            };
            super::io::out(&report::render_text_at(&json, style, detail));
        }
        Format::Dot => super::io::out(&report::render_dot(&json, &result)),
        Format::Svg => super::io::out(&kubepath_report::html::render_svg(&json, &result)),
        Format::Html => super::io::out(&kubepath_report::html::render_html(&json, &result)),
    }
    Ok(if result.all_delivered() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
