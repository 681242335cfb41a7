//! `kubepath netfilter trace`: trace one packet through a node's iptables or nftables rulesets.
//!
//! `--ruleset` files may be `iptables-save` output, `iptables [-t TABLE] -S` output, or an nft
//! ruleset (`nft list ruleset` output or an `nft -f` file, or `nft -j list ruleset` JSON: told
//! by content, a `table FAMILY NAME {` block, `add table|chain|rule|...` commands, or `{` and
//! the `"nftables"` property); nft and iptables files do not mix. For
//! `-S` text (no `*table` headers) the table comes from a file-name component naming a table
//! (`nat.rules`, `iptables-t-nat-S.txt`), else from a first line echoing the command
//! (`host:~ # iptables -t nat -S`), else from the built-in chains its `-P` lines name, else
//! `filter`, as `iptables -S` without `-t` prints it.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use kubepath_netfilter::{
    trace, trace_nft, Diagnostic, Env, Family, Format, IpSets, NftRuleset, Packet, ParseError,
    Proto, RouteDecision, RouteOracle, Ruleset, Table, Verdict,
};
use kubepath_report::netfilter as rep;
use miette::miette;

#[derive(clap::Subcommand, Debug)]
pub enum NetfilterCommand {
    /// Trace the first packet of a connection through iptables rulesets as the kernel would.
    Trace(TraceArgs),
}

#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    /// An iptables-save / ip6tables-save file, `iptables [-t TABLE] -S` output, or an nft
    /// ruleset (`nft list ruleset`, an `nft -f` file, `nft -j list ruleset` JSON) (repeatable;
    /// files combine, e.g. one per table).
    #[arg(long = "ruleset", value_name = "FILE", required = true)]
    pub rulesets: Vec<PathBuf>,
    /// Source address.
    #[arg(long)]
    pub src: IpAddr,
    /// Destination address.
    #[arg(long)]
    pub dst: IpAddr,
    /// Protocol: tcp, udp, sctp or icmp (icmpv6 for IPv6).
    #[arg(long, value_parser = parse_proto)]
    pub proto: Proto,
    /// Source port (default 32768, the start of Linux's ephemeral range).
    #[arg(long, default_value_t = 32768)]
    pub sport: u16,
    /// Destination port.
    #[arg(long, default_value_t = 0)]
    pub dport: u16,
    /// Interface the packet arrives on (not for --local-origin).
    #[arg(long, value_name = "NAME")]
    pub in_iface: Option<String>,
    /// One of the node's own addresses (repeatable): `addrtype LOCAL` and local delivery.
    #[arg(long = "local", value_name = "IP")]
    pub local: Vec<IpAddr>,
    /// Trace a locally generated packet (OUTPUT path).
    #[arg(long)]
    pub local_origin: bool,
    /// `ipset save` output for `-m set` matches (without it they are UNKNOWN).
    #[arg(long, value_name = "FILE")]
    pub ipset: Option<PathBuf>,
    /// `ipvsadm -Ln` (or `ipvsadm-save -n`) output, where kube-proxy runs in IPVS mode: a
    /// packet delivered locally to one of its virtual services is scheduled to its real
    /// servers (give the virtual addresses, which kube-proxy binds to kube-ipvs0, as --local).
    #[arg(long, value_name = "FILE")]
    pub ipvs: Option<PathBuf>,
    /// Outgoing interface of forwarded packets (for `-o` matches); unknown without it.
    #[arg(long, value_name = "NAME")]
    pub out_iface: Option<String>,
    /// Source address MASQUERADE picks (the outgoing interface's address).
    #[arg(long, value_name = "IP")]
    pub out_src: Option<IpAddr>,
    /// Packet mark on arrival (nfmark).
    #[arg(long, default_value_t = 0, value_parser = parse_u32)]
    pub mark: u32,
    /// Assert that the tables absent from the --ruleset files are not loaded on the node (their
    /// hooks accept). Without it, and unless a file is a whole `iptables-save` (no `-t` echoed,
    /// no table in its name, not `-S` output), an absent table was not collected: a packet
    /// reaching one of its hooks is UNKNOWN, naming the table.
    #[arg(long, conflicts_with = "absent_tables")]
    pub tables_complete: bool,
    /// Tables absent from the --ruleset files that are not loaded on the node (comma-separated:
    /// raw, mangle, nat, filter, security); other absent tables stay not collected.
    #[arg(long, value_name = "TABLE,...", value_delimiter = ',', value_parser = parse_table)]
    pub absent_tables: Vec<Table>,
    /// Print the JSON document (schema kubepath.netfilter-trace/v1, docs/netfilter-trace.md).
    #[arg(long)]
    pub json: bool,
}

fn parse_proto(s: &str) -> Result<Proto, String> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        "sctp" => Ok(Proto::Sctp),
        "icmp" => Ok(Proto::Icmp),
        "icmpv6" | "icmp6" | "ipv6-icmp" => Ok(Proto::Icmpv6),
        other => Err(format!("expected tcp, udp, sctp or icmp, found `{other}`")),
    }
}

fn parse_table(s: &str) -> Result<Table, String> {
    Table::parse(s.trim())
        .ok_or_else(|| format!("expected raw, mangle, nat, filter or security, found `{s}`"))
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("expected a number (decimal or 0x hex), found `{s}`"))
}

/// A fixed routing decision from the command line.
struct CliRoute<'a> {
    local: &'a [IpAddr],
    out_iface: Option<String>,
    out_src: Option<IpAddr>,
}

impl RouteOracle for CliRoute<'_> {
    fn route(&self, pkt: &Packet) -> RouteDecision {
        if pkt.dst.is_loopback() || self.local.contains(&pkt.dst) {
            RouteDecision::Local
        } else {
            RouteDecision::Forward {
                out_iface: self.out_iface.clone(),
                src_hint: self.out_src,
            }
        }
    }
}

/// A parse error rendered by miette with a window of the offending line around the column.
fn parse_report(err: &ParseError, name: &str, text: &str) -> miette::Report {
    super::io::source_error(name, text, err.line, err.column, &err.expected, &err.found)
}

pub fn run(cmd: NetfilterCommand) -> miette::Result<ExitCode> {
    match cmd {
        NetfilterCommand::Trace(a) => run_trace(a),
    }
}

fn run_trace(a: TraceArgs) -> miette::Result<ExitCode> {
    if a.src.is_ipv6() != a.dst.is_ipv6() {
        return Err(miette!(
            "--src {} and --dst {} are of different address families",
            a.src,
            a.dst
        ));
    }
    if a.local_origin && a.in_iface.is_some() {
        return Err(miette!("--in-iface and --local-origin exclude each other"));
    }
    let family = if a.src.is_ipv6() {
        Family::Ipv6
    } else {
        Family::Ipv4
    };
    let mut files = Vec::new();
    for path in &a.rulesets {
        let name = path.display().to_string();
        // Read once; an iptables ruleset shares this text (no copy of a 26 MB file).
        let raw = Arc::new(super::io::read_text_arg(path)?);
        // Prompt lines (`[root@node1 ~]# iptables-save`, `/ # iptables -t nat -S`, `node1:~
        // # nft -j list ruleset`) are skipped as `snapshot inspect` skips them: one prompt
        // grammar. Without any (the usual case) the ruleset shares the file's text.
        let file = kubepath_ingest::net::netfilter::ruleset_file(&name, &raw);
        files.push((name, raw, file));
    }
    let nft: Vec<(&str, &str)> = files
        .iter()
        .map(|(name, raw, f)| (name.as_str(), f.text.as_deref().unwrap_or(raw.as_str())))
        .filter(|(_, text)| NftRuleset::sniff(text))
        .collect();
    if !nft.is_empty() {
        if nft.len() < files.len() {
            return Err(miette!(
                "the --ruleset files mix nft rulesets and iptables text; give one kind"
            ));
        }
        return run_trace_nft(&a, &nft);
    }
    let mut rs = Ruleset::new(family);
    let mut diags: Vec<Diagnostic> = Vec::new();
    // Whether a file is a whole `iptables-save`: then an absent table is not loaded.
    let mut complete = a.tables_complete;
    for (name, raw, file) in files {
        complete |= file.complete;
        let text = match file.text {
            Some(t) => Arc::new(t),
            None => raw.clone(),
        };
        let table = match Ruleset::sniff(&text) {
            Some(Format::Save) => None,
            _ => Some(
                file.echoed_table
                    .or_else(|| Ruleset::table_hint(&name, &raw))
                    .unwrap_or(Table::Filter),
            ),
        };
        match rs.add_shared_text(&name, text, table) {
            Ok(d) => diags.extend(d),
            Err(e) => return Err(parse_report(&e, &name, &raw)),
        }
    }
    let ipsets = match &a.ipset {
        None => None,
        Some(path) => {
            let name = path.display().to_string();
            let text = super::io::read_text_arg(path)?;
            match IpSets::parse_save(&name, &text) {
                Ok((s, d)) => {
                    diags.extend(d);
                    Some(s)
                }
                Err(e) => return Err(parse_report(&e, &name, &text)),
            }
        }
    };
    let ipvs = match &a.ipvs {
        None => None,
        Some(path) => {
            let name = path.display().to_string();
            let text = super::io::read_text_arg(path)?;
            match kubepath_netfilter::IpvsTable::parse(&name, &text) {
                Ok((t, d)) => {
                    diags.extend(d);
                    Some(t)
                }
                Err(e) => return Err(parse_report(&e, &name, &text)),
            }
        }
    };
    if a.src.is_ipv4() != a.dst.is_ipv4() {
        return Err(miette!(
            "--src {} and --dst {} are of different address families",
            a.src,
            a.dst
        ));
    }
    check_icmp_family(&a)?;
    let pkt = cli_packet(&a);
    let router = CliRoute {
        local: &a.local,
        out_iface: a.out_iface.clone(),
        out_src: a.out_src,
    };
    if let Some(t) = a.absent_tables.iter().find(|t| rs.has_table(**t)) {
        return Err(miette!(
            "--absent-tables {t}: the --ruleset files have a {t} table"
        ));
    }
    // A table the files lack was not collected (UNKNOWN at its hooks), unless a file is a
    // whole iptables-save or the user says it is not loaded (it then accepts), as for a
    // snapshot's node (`NodeNet::uncollected_tables`).
    let uncollected: Vec<Table> = if complete {
        Vec::new()
    } else {
        Table::ALL
            .into_iter()
            .filter(|t| !rs.has_table(*t) && !a.absent_tables.contains(t))
            .collect()
    };
    let env = Env {
        local_addrs: &a.local,
        local_origin: a.local_origin,
        router: Some(&router),
        ipsets: ipsets.as_ref(),
        uncollected: &uncollected,
        ipvs: ipvs.as_ref(),
    };
    let mut t = trace(&rs, &pkt, &env);
    for o in &mut t.outcomes {
        let Verdict::Unknown { reason, .. } = &o.verdict else {
            continue;
        };
        if let Some(tab) = uncollected
            .iter()
            .find(|tab| reason.starts_with(&format!("the {tab} table was not collected")))
        {
            o.notes.push(format!(
                "the {tab} table is not in the --ruleset files; if it is not loaded on the node, say so with --absent-tables {tab} (or --tables-complete)"
            ));
        }
    }
    let dto = rep::to_dto(&pkt, &t, &diags);
    if a.json {
        super::io::out(&format!("{}\n", rep::render_json(&dto)));
    } else {
        super::io::out(&rep::render_text(&dto));
    }
    // The process exits right after this answer: freeing a large ruleset's ~100,000
    // allocations one by one (a few ms for a 26 MB kube-proxy dump) would only delay the
    // exit, so the memory is left to the kernel. Nothing else holds or drops it.
    std::mem::forget(rs);
    Ok(ExitCode::SUCCESS)
}

/// The packet the command line describes.
fn cli_packet(a: &TraceArgs) -> Packet {
    let mut pkt = Packet::new(a.src, a.dst, a.proto);
    pkt.sport = a.sport;
    pkt.dport = a.dport;
    pkt.in_iface = a.in_iface.clone();
    pkt.mark = a.mark;
    if a.proto == Proto::Udp {
        pkt.length = 48;
    }
    pkt
}

/// `--ruleset` files that are nft rulesets (text or JSON): all tables of all families in them,
/// traced by the nft engine; same output.
/// `--proto icmp` goes with IPv4 addresses, `icmpv6` with IPv6 (both engines).
fn check_icmp_family(a: &TraceArgs) -> miette::Result<()> {
    match (a.proto, a.src.is_ipv4()) {
        (Proto::Icmpv6, true) => Err(miette!(
            "--proto icmpv6 goes with IPv6 addresses; use icmp for IPv4"
        )),
        (Proto::Icmp, false) => Err(miette!(
            "--proto icmp goes with IPv4 addresses; use icmpv6 for IPv6"
        )),
        _ => Ok(()),
    }
}

fn run_trace_nft(a: &TraceArgs, files: &[(&str, &str)]) -> miette::Result<ExitCode> {
    if a.ipvs.is_some() {
        return Err(miette!(
            "--ipvs goes with iptables rulesets (kube-proxy's IPVS mode); IPVS beside nft rulesets is not modelled"
        ));
    }
    if a.ipset.is_some() {
        return Err(miette!(
            "--ipset applies to iptables rulesets; nft rulesets hold their sets"
        ));
    }
    if !a.absent_tables.is_empty() || a.tables_complete {
        return Err(miette!(
            "--absent-tables / --tables-complete apply to iptables rulesets; an nft ruleset lists every table"
        ));
    }
    check_icmp_family(a)?;
    let mut rs = NftRuleset::new();
    let mut diags: Vec<Diagnostic> = Vec::new();
    for &(name, raw) in files {
        match rs.add_text(name, raw) {
            Ok(d) => diags.extend(d),
            Err(e) => return Err(parse_report(&e, name, raw)),
        }
    }
    let pkt = cli_packet(a);
    let router = CliRoute {
        local: &a.local,
        out_iface: a.out_iface.clone(),
        out_src: a.out_src,
    };
    let env = Env {
        local_addrs: &a.local,
        local_origin: a.local_origin,
        router: Some(&router),
        ipsets: None,
        uncollected: &[],
        ipvs: None,
    };
    let t = trace_nft(&rs, &pkt, &env);
    let dto = rep::to_dto(&pkt, &t, &diags);
    if a.json {
        super::io::out(&format!("{}\n", rep::render_json(&dto)));
    } else {
        super::io::out(&rep::render_text(&dto));
    }
    Ok(ExitCode::SUCCESS)
}
