//! `-m` match modules and their options (iptables-extensions(8), iptables 1.8.9): which
//! options each module takes, reading them into [`Match`]es, and the modules whose options
//! make one match together.

use super::{
    addr_expect, parse_addr, parse_cidr, parse_port_range, parse_u32, Ctx, Cur, RuleCtx, Tok,
};
use crate::rule::{addrtype, ctstate, ctstatus, CtField, IpRangeM, Match, PortRangeU32, SetRef};
use crate::types::{ParseError, Proto};

/// A match module (`-m NAME`), by how it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Module {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmp6,
    Multiport,
    Comment,
    Mark,
    Connmark,
    Conntrack,
    State,
    Statistic,
    Recent,
    IpRange,
    Set,
    Length,
    Limit,
    AddrType,
    PhysDev,
    Policy,
    PktType,
    RpFilter,
    /// Known syntax, value unknowable here (mac, owner, socket, rpfilter ...).
    Unknowable,
    /// Unknown module: opaque rule.
    Opaque,
}

pub(super) fn module_kind(name: &str) -> Module {
    match name {
        "tcp" => Module::Tcp,
        "udp" | "udplite" => Module::Udp,
        "sctp" => Module::Sctp,
        "icmp" => Module::Icmp,
        "icmp6" | "icmpv6" | "ipv6-icmp" => Module::Icmp6,
        "multiport" => Module::Multiport,
        "comment" => Module::Comment,
        "mark" => Module::Mark,
        "connmark" => Module::Connmark,
        "conntrack" => Module::Conntrack,
        "state" => Module::State,
        "statistic" => Module::Statistic,
        "recent" => Module::Recent,
        "iprange" => Module::IpRange,
        "set" => Module::Set,
        "length" => Module::Length,
        "limit" | "hashlimit" => Module::Limit,
        "addrtype" => Module::AddrType,
        "physdev" => Module::PhysDev,
        "policy" => Module::Policy,
        "pkttype" => Module::PktType,
        "rpfilter" => Module::RpFilter,
        "mac" | "owner" | "socket" | "dscp" | "tos" | "ttl" | "hl" | "helper" | "connlimit"
        | "connbytes" | "cgroup" | "devgroup" | "tcpmss" | "ecn" | "realm" | "cpu" | "time"
        | "quota" | "connlabel" | "nfacct" | "ipvs" | "cluster" | "esp" | "ah" | "frag" | "hbh"
        | "dst" | "rt" | "mh" | "ipv6header" | "osf" | "dccp" | "geoip" => Module::Unknowable,
        _ => Module::Opaque,
    }
}

/// Does `module` take option `opt`?
pub(super) fn module_accepts(m: Module, opt: &str) -> bool {
    match m {
        Module::Tcp => matches!(
            opt,
            "--sport"
                | "--source-port"
                | "--dport"
                | "--destination-port"
                | "--tcp-flags"
                | "--syn"
                | "--tcp-option"
        ),
        Module::Udp => matches!(
            opt,
            "--sport" | "--source-port" | "--dport" | "--destination-port"
        ),
        Module::Sctp => matches!(
            opt,
            "--sport" | "--source-port" | "--dport" | "--destination-port" | "--chunk-types"
        ),
        Module::Icmp => opt == "--icmp-type",
        Module::Icmp6 => opt == "--icmpv6-type",
        Module::Multiport => matches!(
            opt,
            "--sports" | "--source-ports" | "--dports" | "--destination-ports" | "--ports"
        ),
        Module::Comment => opt == "--comment",
        Module::Mark | Module::Connmark => opt == "--mark",
        Module::Conntrack => matches!(
            opt,
            "--ctstate"
                | "--ctproto"
                | "--ctorigsrc"
                | "--ctorigdst"
                | "--ctreplsrc"
                | "--ctrepldst"
                | "--ctorigsrcport"
                | "--ctorigdstport"
                | "--ctreplsrcport"
                | "--ctrepldstport"
                | "--ctstatus"
                | "--ctexpire"
                | "--ctdir"
        ),
        Module::State => opt == "--state",
        Module::Statistic => matches!(opt, "--mode" | "--probability" | "--every" | "--packet"),
        Module::Recent => matches!(
            opt,
            "--set"
                | "--rcheck"
                | "--update"
                | "--remove"
                | "--name"
                | "--rsource"
                | "--rdest"
                | "--mask"
                | "--seconds"
                | "--reap"
                | "--hitcount"
                | "--rttl"
        ),
        Module::IpRange => matches!(opt, "--src-range" | "--dst-range"),
        Module::Set => matches!(
            opt,
            "--match-set"
                | "--set"
                | "--return-nomatch"
                | "--update-counters"
                | "--update-subcounters"
                | "--packets-eq"
                | "--packets-lt"
                | "--packets-gt"
                | "--bytes-eq"
                | "--bytes-lt"
                | "--bytes-gt"
        ),
        Module::Length => opt == "--length",
        Module::Limit => opt.starts_with("--limit") || opt.starts_with("--hashlimit"),
        Module::AddrType => matches!(
            opt,
            "--src-type" | "--dst-type" | "--limit-iface-in" | "--limit-iface-out"
        ),
        Module::PhysDev => matches!(
            opt,
            "--physdev-in"
                | "--physdev-out"
                | "--physdev-is-in"
                | "--physdev-is-out"
                | "--physdev-is-bridged"
        ),
        Module::Policy => matches!(
            opt,
            "--dir"
                | "--pol"
                | "--strict"
                | "--reqid"
                | "--spi"
                | "--proto"
                | "--mode"
                | "--tunnel-src"
                | "--tunnel-dst"
                | "--next"
        ),
        Module::PktType => opt == "--pkt-type",
        Module::RpFilter => matches!(
            opt,
            "--loose" | "--validmark" | "--accept-local" | "--invert"
        ),
        Module::Unknowable | Module::Opaque => opt.starts_with("--"),
    }
}

/// Modules with multi-option state, finalized at the end of the rule or the next `-m`.
#[derive(Debug)]
pub(super) enum Acc {
    Statistic {
        tok_off: usize,
        mode: Option<bool>, // Some(true): random, Some(false): nth
        p: Option<f64>,
        every: Option<u32>,
        neg: bool,
    },
    AddrType {
        src: Option<(u16, bool)>,
        dst: Option<(u16, bool)>,
        limit_in: bool,
        limit_out: bool,
    },
    Recent {
        action: Option<(bool, bool)>,
    },
    PhysDev(Vec<(Box<str>, bool)>),
    Policy {
        ipsec: Option<bool>,
    },
    Set {
        counters: bool,
    },
    /// `-m conntrack`: its options' matches start at this index of the output.
    Conntrack {
        start: usize,
    },
}

/// What loading module `kind` (`-m NAME`, `name` its token) starts: a match pushed to `out`
/// now, or the state its options fill in (the modules whose options make one match together).
pub(super) fn start_module(kind: Module, name: Tok, out: &mut Vec<Match>) -> Option<Acc> {
    match kind {
        Module::Opaque => out.push(Match::Opaque(format!("-m {}", name.s).into())),
        Module::Unknowable => out.push(Match::Unknowable(format!("-m {}", name.s).into())),
        Module::Statistic => {
            return Some(Acc::Statistic {
                tok_off: name.off,
                mode: None,
                p: None,
                every: None,
                neg: false,
            })
        }
        Module::AddrType => {
            return Some(Acc::AddrType {
                src: None,
                dst: None,
                limit_in: false,
                limit_out: false,
            })
        }
        Module::Recent => return Some(Acc::Recent { action: None }),
        Module::PhysDev => return Some(Acc::PhysDev(Vec::new())),
        Module::Policy => return Some(Acc::Policy { ipsec: None }),
        Module::Set => return Some(Acc::Set { counters: false }),
        Module::Conntrack => return Some(Acc::Conntrack { start: out.len() }),
        Module::Limit => out.push(Match::Limit),
        Module::RpFilter => out.push(Match::RpFilter {
            loose: false,
            validmark: false,
            accept_local: false,
            invert: false,
        }),
        _ => {}
    }
    None
}

/// Option `opt` (`neg`: preceded by `!`) of match module `m`, its arguments read from `cur`:
/// the matches it makes are pushed to `out`, or gathered in `acc` for the modules whose
/// options make one match together ([`finish_acc`]).
pub(super) fn parse_module_opt(
    rc: &RuleCtx,
    m: Module,
    opt: Tok,
    neg: bool,
    cur: &mut Cur,
    out: &mut Vec<Match>,
    acc: &mut Option<Acc>,
) -> Result<(), ParseError> {
    let (ctx, v6) = (rc.ctx, rc.v6);
    let o = opt.s;
    match m {
        Module::Tcp | Module::Udp | Module::Sctp => ports_opt(ctx, o, neg, cur, out)?,
        Module::Icmp | Module::Icmp6 => {
            let is6 = m == Module::Icmp6;
            let a = cur.arg(ctx, "an ICMP type (name, N or N/CODE)")?;
            let (ty, code) = icmp_name(a.s, is6)
                .ok_or_else(|| ctx.err_tok(&a, "an ICMP type (name, N or N/CODE)"))?;
            out.push(Match::Icmp {
                v6: is6,
                ty,
                code,
                neg,
            });
        }
        Module::Multiport => multiport_opt(ctx, o, neg, cur, out)?,
        Module::Comment => {
            let a = cur.arg(ctx, "a comment")?;
            // libxt_comment refuses a comment of XT_MAX_COMMENT_LEN (256) bytes or more
            // ("COMMENT must be shorter than 256 characters"), so iptables-restore rejects
            // the ruleset; a backslash escape counts as the one byte it stands for.
            let bytes = a.s.len() - a.s.matches('\\').count().min(a.s.len());
            if bytes >= 256 {
                return Err(ctx.err_at(
                    a.off,
                    "a comment shorter than 256 bytes (iptables' limit)",
                    format!("a comment of {bytes} bytes"),
                ));
            }
        }
        Module::Mark | Module::Connmark => {
            let a = cur.arg(ctx, "a mark value[/mask]")?;
            let (value, mask) =
                parse_mark(a.s).ok_or_else(|| ctx.err_tok(&a, "a mark value[/mask]"))?;
            out.push(if m == Module::Mark {
                Match::Mark { value, mask, neg }
            } else {
                Match::ConnMark { value, mask, neg }
            });
        }
        Module::State | Module::Conntrack => conntrack_opt(ctx, opt, neg, cur, out, v6)?,
        Module::Statistic => statistic_opt(ctx, opt, neg, cur, acc)?,
        Module::Recent => recent_opt(ctx, opt, neg, cur, acc, v6)?,
        Module::IpRange => iprange_opt(ctx, o, neg, cur, out, v6)?,
        Module::Set => set_opt(ctx, opt, neg, cur, out, acc)?,
        Module::Length => {
            let a = cur.arg(ctx, "a length or range (N or N:M)")?;
            let r = parse_port_range(a.s)
                .ok_or_else(|| ctx.err_tok(&a, "a length or range (N or N:M)"))?;
            out.push(Match::Length(r, neg));
        }
        Module::Limit => {
            // --limit RATE, --limit-burst N, --hashlimit-*: all take one argument except
            // boolean hashlimit flags; skip arguments up to the next option.
            cur.skip_args();
        }
        Module::AddrType => addrtype_opt(ctx, opt, neg, cur, acc)?,
        Module::PhysDev => {
            let Some(Acc::PhysDev(conds)) = acc.as_mut() else {
                return Err(ctx.err_tok(&opt, "`-m physdev` before its options"));
            };
            if o == "--physdev-in" || o == "--physdev-out" {
                cur.arg(ctx, "a bridge port name")?;
            }
            conds.push((o.into(), neg));
        }
        Module::Policy => policy_opt(ctx, opt, cur, acc)?,
        Module::PktType => {
            let a = cur.arg(ctx, "unicast, broadcast or multicast")?;
            let t = match a.s {
                "unicast" => 0,
                "broadcast" => 1,
                "multicast" => 2,
                _ => return Err(ctx.err_tok(&a, "unicast, broadcast or multicast")),
            };
            out.push(Match::PktType(t, neg));
        }
        Module::RpFilter => {
            if let Some(Match::RpFilter {
                loose,
                validmark,
                accept_local,
                invert,
            }) = out.last_mut()
            {
                match o {
                    "--loose" => *loose = true,
                    "--validmark" => *validmark = true,
                    "--accept-local" => *accept_local = true,
                    _ => *invert = true,
                }
            }
        }
        Module::Unknowable | Module::Opaque => cur.skip_args(),
    }
    Ok(())
}

/// tcp, udp (udplite) and sctp: ports, TCP flags and options (iptables-extensions(8)).
fn ports_opt(
    ctx: &Ctx,
    o: &str,
    neg: bool,
    cur: &mut Cur,
    out: &mut Vec<Match>,
) -> Result<(), ParseError> {
    match o {
        "--sport" | "--source-port" | "--dport" | "--destination-port" => {
            let a = cur.arg(ctx, "a port or port range (N or N:M)")?;
            let r = parse_port_range(a.s)
                .ok_or_else(|| ctx.err_tok(&a, "a port or port range (N or N:M)"))?;
            out.push(if o == "--sport" || o == "--source-port" {
                Match::Sport(r, neg)
            } else {
                Match::Dport(r, neg)
            });
        }
        "--syn" => out.push(Match::TcpFlags {
            mask: 0x17,
            comp: 0x02,
            neg,
        }),
        "--tcp-flags" => {
            let a = cur.arg(ctx, "a TCP flag list (e.g. SYN,RST,ACK,FIN)")?;
            let mask = tcp_flag_list(a.s)
                .ok_or_else(|| ctx.err_tok(&a, "a TCP flag list (e.g. SYN,RST,ACK,FIN)"))?;
            let b = cur.arg(ctx, "a TCP flag list (e.g. SYN)")?;
            let comp =
                tcp_flag_list(b.s).ok_or_else(|| ctx.err_tok(&b, "a TCP flag list (e.g. SYN)"))?;
            out.push(Match::TcpFlags { mask, comp, neg });
        }
        "--tcp-option" => {
            let a = cur.arg(ctx, "a TCP option number")?;
            a.s.parse::<u8>()
                .map_err(|_| ctx.err_tok(&a, "a TCP option number"))?;
            out.push(Match::Unknowable(
                "--tcp-option (TCP options of the packet are not modelled)".into(),
            ));
        }
        _ => {
            cur.skip_args();
            out.push(Match::Unknowable(format!("{o} (not modelled)").into()));
        }
    }
    Ok(())
}

/// multiport: up to 15 ports or ranges, source, destination or either.
fn multiport_opt(
    ctx: &Ctx,
    o: &str,
    neg: bool,
    cur: &mut Cur,
    out: &mut Vec<Match>,
) -> Result<(), ParseError> {
    let a = cur.arg(ctx, "a comma-separated port list")?;
    let mut ports = Vec::new();
    for p in a.s.split(',') {
        ports.push(
            parse_port_range(p)
                .ok_or_else(|| ctx.err_tok(&a, "a comma-separated port list (N, N:M)"))?,
        );
    }
    if ports.is_empty() || ports.len() > 15 {
        return Err(ctx.err_tok(&a, "between 1 and 15 ports"));
    }
    let (src, dst) = match o {
        "--sports" | "--source-ports" => (true, false),
        "--dports" | "--destination-ports" => (false, true),
        _ => (true, true),
    };
    out.push(Match::Multiport {
        src,
        dst,
        ports: ports.into(),
        neg,
    });
    Ok(())
}

/// state and conntrack: the connection's state, status, protocol, tuple, expiry and direction.
fn conntrack_opt(
    ctx: &Ctx,
    opt: Tok,
    neg: bool,
    cur: &mut Cur,
    out: &mut Vec<Match>,
    v6: bool,
) -> Result<(), ParseError> {
    let o = opt.s;
    match o {
        "--state" | "--ctstate" => {
            let a = cur.arg(ctx, "a state list (NEW,ESTABLISHED,...)")?;
            let mut bits = 0;
            for s in a.s.split(',') {
                bits |= ctstate::parse(s).ok_or_else(|| {
                    ctx.err_tok(
                        &a,
                        "a state list of INVALID, NEW, ESTABLISHED, RELATED, UNTRACKED, SNAT, DNAT",
                    )
                })?;
            }
            out.push(Match::CtState(bits, neg));
        }
        "--ctstatus" => {
            let a = cur.arg(
                ctx,
                "a status list (NONE,EXPECTED,SEEN_REPLY,ASSURED,CONFIRMED)",
            )?;
            let mut bits = 0;
            for s in a.s.split(',') {
                bits |= ctstatus::parse(s).ok_or_else(|| {
                    ctx.err_tok(
                        &a,
                        "a status list of NONE, EXPECTED, SEEN_REPLY, ASSURED, CONFIRMED",
                    )
                })?;
            }
            out.push(Match::CtStatus(bits, neg));
        }
        "--ctproto" => {
            let a = cur.arg(ctx, "a protocol")?;
            let p = if a.s == "all" {
                0
            } else {
                Proto::parse(a.s)
                    .ok_or_else(|| ctx.err_tok(&a, "a protocol"))?
                    .number()
            };
            out.push(Match::CtProto(p, neg));
        }
        "--ctorigsrc" | "--ctorigdst" | "--ctreplsrc" | "--ctrepldst" => {
            let a = cur.arg(ctx, "an address")?;
            let c = parse_cidr(a.s, v6).ok_or_else(|| ctx.err_tok(&a, addr_expect(v6, true)))?;
            out.push(Match::CtAddr(ct_field(o), c, neg));
        }
        "--ctorigsrcport" | "--ctorigdstport" | "--ctreplsrcport" | "--ctrepldstport" => {
            let a = cur.arg(ctx, "a port or port range")?;
            let r = parse_port_range(a.s)
                .ok_or_else(|| ctx.err_tok(&a, "a port or port range (N or N:M)"))?;
            out.push(Match::CtPort(ct_field(o.trim_end_matches("port")), r, neg));
        }
        "--ctexpire" => {
            let a = cur.arg(ctx, "a time range (N or N:M)")?;
            let (lo, hi) = match a.s.split_once(':') {
                Some((x, y)) => (x.parse::<u32>().ok(), y.parse::<u32>().ok()),
                None => (a.s.parse::<u32>().ok(), a.s.parse::<u32>().ok()),
            };
            let (Some(lo), Some(hi)) = (lo, hi) else {
                return Err(ctx.err_tok(&a, "a time range (N or N:M)"));
            };
            out.push(Match::CtExpire(PortRangeU32 { lo, hi }, neg));
        }
        "--ctdir" => {
            let a = cur.arg(ctx, "ORIGINAL or REPLY")?;
            let orig = match a.s {
                "ORIGINAL" => true,
                "REPLY" => false,
                _ => return Err(ctx.err_tok(&a, "ORIGINAL or REPLY")),
            };
            out.push(Match::CtDir(orig));
        }
        _ => return Err(ctx.err_tok(&opt, "a conntrack option")),
    }
    Ok(())
}

/// statistic: `--mode random --probability P` or `--mode nth --every N [--packet N]`, gathered
/// in `acc` until the rule's end or the next `-m`.
fn statistic_opt(
    ctx: &Ctx,
    opt: Tok,
    neg: bool,
    cur: &mut Cur,
    acc: &mut Option<Acc>,
) -> Result<(), ParseError> {
    let o = opt.s;
    let Some(Acc::Statistic {
        mode,
        p,
        every,
        neg: sneg,
        ..
    }) = acc.as_mut()
    else {
        return Err(ctx.err_tok(&opt, "`-m statistic` before its options"));
    };
    match o {
        "--mode" => {
            let a = cur.arg(ctx, "random or nth")?;
            *mode = Some(match a.s {
                "random" => true,
                "nth" => false,
                _ => return Err(ctx.err_tok(&a, "random or nth")),
            });
        }
        "--probability" => {
            let a = cur.arg(ctx, "a probability between 0 and 1")?;
            let v: f64 =
                a.s.parse()
                    .map_err(|_| ctx.err_tok(&a, "a probability between 0 and 1"))?;
            if !(0.0..=1.0).contains(&v) {
                return Err(ctx.err_tok(&a, "a probability between 0 and 1"));
            }
            *p = Some(v);
            *sneg ^= neg;
        }
        "--every" => {
            let a = cur.arg(ctx, "a packet count")?;
            let v: u32 =
                a.s.parse()
                    .map_err(|_| ctx.err_tok(&a, "a positive packet count"))?;
            if v == 0 {
                return Err(ctx.err_tok(&a, "a positive packet count"));
            }
            *every = Some(v);
            *sneg ^= neg;
        }
        _ => {
            let a = cur.arg(ctx, "a packet number")?;
            a.s.parse::<u32>()
                .map_err(|_| ctx.err_tok(&a, "a packet number"))?;
        }
    }
    Ok(())
}

/// recent: the action (`--set`, `--rcheck`, `--update`, `--remove`) and the options checked for
/// syntax only (the recent lists are not known).
fn recent_opt(
    ctx: &Ctx,
    opt: Tok,
    neg: bool,
    cur: &mut Cur,
    acc: &mut Option<Acc>,
    v6: bool,
) -> Result<(), ParseError> {
    let o = opt.s;
    let Some(Acc::Recent { action }) = acc.as_mut() else {
        return Err(ctx.err_tok(&opt, "`-m recent` before its options"));
    };
    match o {
        "--set" | "--remove" | "--rcheck" | "--update" => {
            if action.is_some() {
                return Err(ctx.err_tok(&opt, "only one of --set, --rcheck, --update, --remove"));
            }
            *action = Some((matches!(o, "--set" | "--remove"), neg));
        }
        "--name" | "--mask" | "--seconds" | "--hitcount" => {
            let a = cur.arg(ctx, "a value")?;
            let ok = match o {
                "--name" => true,
                "--mask" => parse_addr(a.s, v6).is_some(),
                _ => a.s.parse::<u32>().is_ok(),
            };
            if !ok {
                return Err(ctx.err_tok(&a, format!("a value for {o}")));
            }
        }
        _ => {}
    }
    Ok(())
}

/// iprange: `--src-range` / `--dst-range A-B`.
fn iprange_opt(
    ctx: &Ctx,
    o: &str,
    neg: bool,
    cur: &mut Cur,
    out: &mut Vec<Match>,
    v6: bool,
) -> Result<(), ParseError> {
    let a = cur.arg(ctx, "an address range (A-B)")?;
    let (x, y) =
        a.s.split_once('-')
            .ok_or_else(|| ctx.err_tok(&a, "an address range (A-B)"))?;
    let lo = parse_addr(x, v6).ok_or_else(|| ctx.err_tok(&a, "an address range (A-B)"))?;
    let hi = parse_addr(y, v6).ok_or_else(|| ctx.err_tok(&a, "an address range (A-B)"))?;
    out.push(Match::IpRange(Box::new(if o == "--src-range" {
        IpRangeM {
            src: Some((lo, hi, neg)),
            dst: None,
        }
    } else {
        IpRangeM {
            src: None,
            dst: Some((lo, hi, neg)),
        }
    })));
    Ok(())
}

/// set: `--match-set NAME FLAGS`, `--return-nomatch`, and the counter conditions (which make
/// the match depend on counters: [`Match::SetCounters`]).
fn set_opt(
    ctx: &Ctx,
    opt: Tok,
    neg: bool,
    cur: &mut Cur,
    out: &mut Vec<Match>,
    acc: &mut Option<Acc>,
) -> Result<(), ParseError> {
    let o = opt.s;
    match o {
        "--match-set" | "--set" => {
            let name = cur.arg(ctx, "a set name")?;
            let flags = cur.arg(ctx, "set flags (src, dst, src,dst ...)")?;
            let mut dirs = Vec::new();
            for f in flags.s.split(',') {
                dirs.push(match f {
                    "src" => true,
                    "dst" => false,
                    _ => return Err(ctx.err_tok(&flags, "set flags (src, dst, src,dst ...)")),
                });
            }
            if dirs.len() > 6 {
                return Err(ctx.err_tok(&flags, "at most 6 set dimensions"));
            }
            out.push(Match::Set(
                SetRef {
                    name: name.s.into(),
                    dirs,
                    return_nomatch: false,
                },
                neg,
            ));
        }
        "--return-nomatch" => match out.iter_mut().rev().find(|m| matches!(m, Match::Set(..))) {
            Some(Match::Set(r, _)) => r.return_nomatch = true,
            _ => return Err(ctx.err_tok(&opt, "--match-set before --return-nomatch")),
        },
        // Counter updates do not change whether the packet matches.
        "--update-counters" | "--update-subcounters" => {}
        _ => {
            let a = cur.arg(ctx, "a counter value")?;
            a.s.parse::<u64>()
                .map_err(|_| ctx.err_tok(&a, "a counter value"))?;
            if let Some(Acc::Set { counters }) = acc.as_mut() {
                *counters = true;
            }
        }
    }
    Ok(())
}

/// addrtype: source and destination address types, optionally limited to the interfaces.
fn addrtype_opt(
    ctx: &Ctx,
    opt: Tok,
    neg: bool,
    cur: &mut Cur,
    acc: &mut Option<Acc>,
) -> Result<(), ParseError> {
    let o = opt.s;
    let Some(Acc::AddrType {
        src,
        dst,
        limit_in,
        limit_out,
    }) = acc.as_mut()
    else {
        return Err(ctx.err_tok(&opt, "`-m addrtype` before its options"));
    };
    match o {
        "--src-type" | "--dst-type" => {
            let a = cur.arg(ctx, "an address type list (LOCAL, UNICAST, ...)")?;
            let mut bits = 0;
            for s in a.s.split(',') {
                bits |= addrtype::parse(s).ok_or_else(|| {
                        ctx.err_tok(&a, "an address type list (UNSPEC, UNICAST, LOCAL, BROADCAST, ANYCAST, MULTICAST, BLACKHOLE, UNREACHABLE, PROHIBIT, THROW, NAT, XRESOLVE)")
                    })?;
            }
            if o == "--src-type" {
                *src = Some((bits, neg));
            } else {
                *dst = Some((bits, neg));
            }
        }
        "--limit-iface-in" => *limit_in = true,
        _ => *limit_out = true,
    }
    Ok(())
}

/// policy: `--pol none|ipsec` decides; the other options are checked for syntax.
fn policy_opt(ctx: &Ctx, opt: Tok, cur: &mut Cur, acc: &mut Option<Acc>) -> Result<(), ParseError> {
    let o = opt.s;
    let Some(Acc::Policy { ipsec }) = acc.as_mut() else {
        return Err(ctx.err_tok(&opt, "`-m policy` before its options"));
    };
    match o {
        "--pol" => {
            let a = cur.arg(ctx, "none or ipsec")?;
            *ipsec = Some(match a.s {
                "none" => false,
                "ipsec" => true,
                _ => return Err(ctx.err_tok(&a, "none or ipsec")),
            });
        }
        "--dir" => {
            let a = cur.arg(ctx, "in or out")?;
            if a.s != "in" && a.s != "out" {
                return Err(ctx.err_tok(&a, "in or out"));
            }
        }
        "--strict" | "--next" => {}
        _ => {
            cur.arg(ctx, "a value")?;
        }
    }
    Ok(())
}

/// The conntrack tuple field of a `--ctorig*`/`--ctrepl*` option (without its `port` suffix).
fn ct_field(o: &str) -> CtField {
    match o {
        "--ctorigsrc" => CtField::OrigSrc,
        "--ctorigdst" => CtField::OrigDst,
        "--ctreplsrc" => CtField::ReplSrc,
        _ => CtField::ReplDst,
    }
}

/// The match of the module whose options `acc` gathered (if any), pushed to `out`.
pub(super) fn finish_acc(
    ctx: &Ctx,
    acc: &mut Option<Acc>,
    out: &mut Vec<Match>,
) -> Result<(), ParseError> {
    let Some(a) = acc.take() else { return Ok(()) };
    match a {
        Acc::Statistic {
            tok_off,
            mode,
            p,
            every,
            neg,
        } => match (mode, p, every) {
            (Some(true), Some(p), None) => {
                // libxt_statistic: probability = lround(0x80000000 * p); the kernel matches when
                // (get_random_u32() & 0x7FFFFFFF) < probability.
                let q = (p * 2147483648.0).round() / 2147483648.0;
                out.push(Match::Statistic {
                    p: q,
                    neg,
                    nth: None,
                });
            }
            (Some(false), None, Some(n)) => out.push(Match::Statistic {
                p: 1.0 / n as f64,
                neg,
                nth: Some(n),
            }),
            (Some(true), _, _) => {
                return Err(ctx.err_at(
                    tok_off,
                    "--probability for --mode random",
                    "`statistic` without it",
                ))
            }
            (Some(false), _, _) => {
                return Err(ctx.err_at(tok_off, "--every for --mode nth", "`statistic` without it"))
            }
            (None, _, _) => {
                return Err(ctx.err_at(
                    tok_off,
                    "--mode random or --mode nth",
                    "`statistic` without --mode",
                ))
            }
        },
        Acc::AddrType {
            src,
            dst,
            limit_in,
            limit_out,
        } => out.push(Match::AddrType {
            src,
            dst,
            limit_in,
            limit_out,
        }),
        Acc::Recent { action } => {
            // Default action is --rcheck (iptables-extensions: "--rcheck ... default").
            let (matches_first, neg) = action.unwrap_or((false, false));
            out.push(Match::Recent { matches_first, neg });
        }
        Acc::PhysDev(conds) => out.push(Match::PhysDev {
            conds: conds.into(),
        }),
        Acc::Policy { ipsec } => out.push(Match::Policy {
            ipsec: ipsec.unwrap_or(true),
        }),
        Acc::Set { counters } => {
            if counters {
                out.push(Match::SetCounters);
            }
        }
        Acc::Conntrack { start } => {
            if out.len() > start + 1 {
                let items: Vec<Match> = out.drain(start..).collect();
                out.push(Match::CtGroup(items.into()));
            }
        }
    }
    Ok(())
}

/// `value[/mask]` (mask defaults to all ones).
fn parse_mark(s: &str) -> Option<(u32, u32)> {
    match s.split_once('/') {
        Some((v, m)) => Some((parse_u32(v)?, parse_u32(m)?)),
        None => Some((parse_u32(s)?, u32::MAX)),
    }
}

fn tcp_flag_list(s: &str) -> Option<u8> {
    let mut v = 0u8;
    for f in s.split(',') {
        v |= match f {
            "FIN" => 0x01,
            "SYN" => 0x02,
            "RST" => 0x04,
            "PSH" => 0x08,
            "ACK" => 0x10,
            "URG" => 0x20,
            "ECE" => 0x40,
            "CWR" => 0x80,
            "ALL" => 0xff,
            "NONE" => 0,
            _ => return None,
        };
    }
    Some(v)
}

fn icmp_name(s: &str, v6: bool) -> Option<(Option<u8>, Option<u8>)> {
    // (type, code); `any` is (None, None).
    if s == "any" {
        return Some((None, None));
    }
    if let Some((a, b)) = s.split_once('/') {
        return Some((Some(a.parse().ok()?), Some(b.parse().ok()?)));
    }
    if let Ok(n) = s.parse::<u8>() {
        return Some((Some(n), None));
    }
    let v = if !v6 {
        match s {
            "echo-reply" | "pong" => (0, None),
            "destination-unreachable" => (3, None),
            "network-unreachable" => (3, Some(0)),
            "host-unreachable" => (3, Some(1)),
            "protocol-unreachable" => (3, Some(2)),
            "port-unreachable" => (3, Some(3)),
            "fragmentation-needed" => (3, Some(4)),
            "source-route-failed" => (3, Some(5)),
            "network-unknown" => (3, Some(6)),
            "host-unknown" => (3, Some(7)),
            "network-prohibited" => (3, Some(9)),
            "host-prohibited" => (3, Some(10)),
            "communication-prohibited" => (3, Some(13)),
            "source-quench" => (4, None),
            "redirect" => (5, None),
            "echo-request" | "ping" => (8, None),
            "router-advertisement" => (9, None),
            "router-solicitation" => (10, None),
            "time-exceeded" | "ttl-exceeded" => (11, None),
            "ttl-zero-during-transit" => (11, Some(0)),
            "ttl-zero-during-reassembly" => (11, Some(1)),
            "parameter-problem" => (12, None),
            "timestamp-request" => (13, None),
            "timestamp-reply" => (14, None),
            "address-mask-request" => (17, None),
            "address-mask-reply" => (18, None),
            _ => return None,
        }
    } else {
        match s {
            "destination-unreachable" => (1, None),
            "no-route" => (1, Some(0)),
            "communication-prohibited" => (1, Some(1)),
            "address-unreachable" => (1, Some(3)),
            "port-unreachable" => (1, Some(4)),
            "packet-too-big" => (2, None),
            "time-exceeded" | "ttl-exceeded" => (3, None),
            "parameter-problem" => (4, None),
            "echo-request" | "ping" => (128, None),
            "echo-reply" | "pong" => (129, None),
            "router-solicitation" => (133, None),
            "router-advertisement" => (134, None),
            "neighbour-solicitation" | "neighbor-solicitation" => (135, None),
            "neighbour-advertisement" | "neighbor-advertisement" => (136, None),
            "redirect" => (137, None),
            _ => return None,
        }
    };
    Some((Some(v.0), v.1))
}

/// Up to 8 loaded modules inline, more on the heap.
#[derive(Default)]
pub(super) struct SmallModules<'a> {
    inline: [Option<(Module, &'a str)>; 8],
    len: usize,
    more: Vec<(Module, &'a str)>,
}

impl<'a> SmallModules<'a> {
    pub(super) fn push(&mut self, m: (Module, &'a str)) {
        if self.len < self.inline.len() {
            self.inline[self.len] = Some(m);
        } else {
            self.more.push(m);
        }
        self.len += 1;
    }
    pub(super) fn last(&self) -> Option<(Module, &'a str)> {
        if self.len == 0 {
            None
        } else if self.len <= self.inline.len() {
            self.inline[self.len - 1]
        } else {
            self.more.last().copied()
        }
    }
    /// Most recent first.
    pub(super) fn iter_rev(&self) -> impl Iterator<Item = (Module, &'a str)> + '_ {
        self.more.iter().rev().copied().chain(
            self.inline[..self.len.min(self.inline.len())]
                .iter()
                .rev()
                .flatten()
                .copied(),
        )
    }
}
