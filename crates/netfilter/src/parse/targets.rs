//! `-j` and `-g` targets and their options (iptables-extensions(8), iptables 1.8.9): which
//! options each target takes, reading them, and the [`Target`] of a rule.

use super::{parse_addr, parse_port_range, parse_u32, ChainMap, Ctx, Cur, RuleCtx, Tok};
use crate::rule::{ConnmarkOp, MarkOp, NatRange, PortRange, Target};
use crate::types::{Diagnostic, ParseError, Table};

/// What a `-j` target name stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TargetKind {
    Accept,
    Drop,
    Return,
    Reject,
    Mark,
    Connmark,
    Dnat,
    Snat,
    Masquerade,
    Redirect,
    Notrack,
    Ct,
    /// LOG, NFLOG, TRACE, AUDIT, CLASSIFY, ...: options accepted, no effect.
    NoEffect,
    /// NFQUEUE, QUEUE, TPROXY...: decided outside the ruleset.
    Unknowable,
    /// A user chain or an unknown extension: resolved at the end of the table.
    Chain,
}

pub(super) fn target_kind(name: &str) -> TargetKind {
    match name {
        "ACCEPT" => TargetKind::Accept,
        "DROP" => TargetKind::Drop,
        "RETURN" => TargetKind::Return,
        "REJECT" => TargetKind::Reject,
        "MARK" => TargetKind::Mark,
        "CONNMARK" => TargetKind::Connmark,
        "DNAT" => TargetKind::Dnat,
        "SNAT" => TargetKind::Snat,
        "MASQUERADE" => TargetKind::Masquerade,
        "REDIRECT" => TargetKind::Redirect,
        "NOTRACK" => TargetKind::Notrack,
        "CT" => TargetKind::Ct,
        "LOG" | "NFLOG" | "ULOG" | "TRACE" | "AUDIT" | "CLASSIFY" | "TCPMSS" | "CHECKSUM"
        | "DSCP" | "TOS" | "TTL" | "HL" | "SET" | "IDLETIMER" | "LED" | "SECMARK"
        | "CONNSECMARK" | "NFACCT" | "RATEEST" | "SYNPROXY" | "CLUSTERIP" | "TEE" | "ECN"
        | "TCPOPTSTRIP" => TargetKind::NoEffect,
        "NFQUEUE" | "QUEUE" => TargetKind::Unknowable,
        _ => TargetKind::Chain,
    }
}

/// Does target `k` take option `opt`?
pub(super) fn target_accepts(k: TargetKind, opt: &str) -> bool {
    match k {
        TargetKind::Accept | TargetKind::Drop | TargetKind::Return | TargetKind::Notrack => false,
        TargetKind::Reject => opt == "--reject-with",
        TargetKind::Mark => matches!(
            opt,
            "--set-xmark" | "--set-mark" | "--and-mark" | "--or-mark" | "--xor-mark"
        ),
        TargetKind::Connmark => matches!(
            opt,
            "--set-xmark"
                | "--set-mark"
                | "--and-mark"
                | "--or-mark"
                | "--xor-mark"
                | "--save-mark"
                | "--restore-mark"
                | "--nfmask"
                | "--ctmask"
                | "--mask"
                | "--left-shift-mark"
                | "--right-shift-mark"
        ),
        TargetKind::Dnat => matches!(
            opt,
            "--to-destination" | "--to" | "--random" | "--persistent"
        ),
        TargetKind::Snat => matches!(
            opt,
            "--to-source" | "--to" | "--random" | "--random-fully" | "--persistent"
        ),
        TargetKind::Masquerade | TargetKind::Redirect => {
            matches!(opt, "--to-ports" | "--random" | "--random-fully")
        }
        TargetKind::Ct => matches!(
            opt,
            "--notrack"
                | "--zone"
                | "--zone-orig"
                | "--zone-reply"
                | "--helper"
                | "--ctevents"
                | "--expevents"
                | "--timeout"
        ),
        TargetKind::NoEffect | TargetKind::Unknowable => opt.starts_with("--"),
        // Tokens after an unknown target belong to it (opaque).
        TargetKind::Chain => opt.starts_with("--"),
    }
}

/// The options given to a rule's target so far, turned into a [`Target`] by [`finish_target`].
#[derive(Default)]
pub(super) struct TargetState {
    /// ip6tables: REJECT defaults to icmp6-port-unreachable.
    v6: bool,
    reject_with: Option<Box<str>>,
    mark: Option<MarkOp>,
    /// CONNMARK: set (value, mask), or save/restore flags and masks.
    cm_set: Option<(u32, u32)>,
    cm_save: bool,
    cm_restore: bool,
    nfmask: Option<u32>,
    ctmask: Option<u32>,
    ranges: Vec<NatRange>,
    persistent: bool,
    nat_random: bool,
    ports: Option<PortRange>,
    notrack: bool,
    random_fully: bool,
    extra_opts: bool,
}

impl TargetState {
    /// No option yet, for ip6tables when `v6`.
    pub(super) fn new(v6: bool) -> Self {
        TargetState {
            v6,
            ..TargetState::default()
        }
    }
}

/// Target option `opt` (`neg`: preceded by `!`, which no target option takes) of a `-j`
/// target of kind `kind`, its arguments read from `cur`, recorded in `ts`.
pub(super) fn parse_target_opt(
    rc: &RuleCtx,
    kind: TargetKind,
    opt: Tok,
    neg: bool,
    cur: &mut Cur,
    ts: &mut TargetState,
) -> Result<(), ParseError> {
    let (ctx, v6) = (rc.ctx, rc.v6);
    if neg {
        return Err(ctx.err_tok(&opt, "a target option without `!`"));
    }
    let o = opt.s;
    match kind {
        TargetKind::Reject => {
            let a = cur.arg(ctx, "a reject type")?;
            if !reject_type_ok(a.s, v6) {
                return Err(ctx.err_tok(&a, if v6 { "an ip6tables reject type (icmp6-port-unreachable, tcp-reset, ...)" } else { "a reject type (icmp-port-unreachable, icmp-host-prohibited, tcp-reset, ...)" }));
            }
            ts.reject_with = Some(a.s.into());
        }
        TargetKind::Mark | TargetKind::Connmark => mark_target_opt(ctx, kind, o, cur, ts)?,
        TargetKind::Dnat | TargetKind::Snat => match o {
            // NF_NAT_RANGE_PROTO_RANDOM(_FULLY): the source port is randomized (SNAT); for
            // DNAT the port choice within a port range (the trace is UNKNOWN then).
            "--random-fully" | "--random" => {
                ts.random_fully = kind == TargetKind::Snat;
                ts.nat_random = true;
            }
            "--persistent" => ts.persistent = true,
            "--to-destination" | "--to-source" | "--to" => {
                let a = cur.arg(ctx, "an address[:port] or range")?;
                let r = parse_nat_range(a.s, v6).ok_or_else(|| {
                    ctx.err_tok(
                        &a,
                        if v6 {
                            "[addr[-addr]]:port[-port] (IPv6 in brackets when a port is given)"
                        } else {
                            "addr[-addr][:port[-port]]"
                        },
                    )
                })?;
                ts.ranges.push(r);
            }
            _ => {}
        },
        TargetKind::Masquerade | TargetKind::Redirect => {
            if o == "--random-fully" || (o == "--random" && kind == TargetKind::Masquerade) {
                ts.random_fully = true;
            } else if o == "--to-ports" {
                let a = cur.arg(ctx, "a port or port range (N or N-M)")?;
                let s = a.s.replace('-', ":");
                ts.ports = Some(
                    parse_port_range(&s)
                        .ok_or_else(|| ctx.err_tok(&a, "a port or port range (N or N-M)"))?,
                );
            }
        }
        TargetKind::Ct => {
            if o == "--notrack" {
                ts.notrack = true;
            } else {
                cur.arg(ctx, "a value")?;
            }
        }
        TargetKind::NoEffect | TargetKind::Unknowable | TargetKind::Chain => {
            ts.extra_opts = true;
            cur.skip_args();
        }
        TargetKind::Accept | TargetKind::Drop | TargetKind::Return | TargetKind::Notrack => {}
    }
    Ok(())
}

/// A MARK or CONNMARK option `o`: the mark operations (`--set-xmark` ... `--xor-mark`, as
/// libxt_MARK / libxt_CONNMARK encode them), CONNMARK's save/restore and masks, and its mark
/// shifts (not modelled).
fn mark_target_opt(
    ctx: &Ctx,
    kind: TargetKind,
    o: &str,
    cur: &mut Cur,
    ts: &mut TargetState,
) -> Result<(), ParseError> {
    match o {
        "--set-xmark" | "--set-mark" | "--and-mark" | "--or-mark" | "--xor-mark" => {
            let a = cur.arg(ctx, "a mark value[/mask]")?;
            let (value, mask, has_mask) = match a.s.split_once('/') {
                Some((v, m)) => (parse_u32(v), parse_u32(m), true),
                None => (parse_u32(a.s), Some(u32::MAX), false),
            };
            let (Some(value), Some(mask)) = (value, mask) else {
                return Err(ctx.err_tok(&a, "a mark value[/mask]"));
            };
            if has_mask && matches!(o, "--and-mark" | "--or-mark" | "--xor-mark") {
                return Err(ctx.err_tok(&a, "a mark value without /mask"));
            }
            // libxt_MARK / libxt_CONNMARK encode every form as (mark & ~mask) ^ value.
            let (v, m) = match o {
                "--set-xmark" => (value, mask),
                "--set-mark" => (value, mask | value),
                "--and-mark" => (0, !value),
                "--or-mark" => (value, value),
                _ => (value, 0),
            };
            if kind == TargetKind::Mark {
                ts.mark = Some(MarkOp::Xset { value: v, mask: m });
            } else {
                ts.cm_set = Some((v, m));
            }
        }
        "--save-mark" => ts.cm_save = true,
        "--restore-mark" => ts.cm_restore = true,
        "--nfmask" | "--ctmask" | "--mask" => {
            let a = cur.arg(ctx, "a mask")?;
            let v = parse_u32(a.s).ok_or_else(|| ctx.err_tok(&a, "a mask"))?;
            match o {
                "--nfmask" => ts.nfmask = Some(v),
                "--ctmask" => ts.ctmask = Some(v),
                _ => {
                    ts.nfmask = Some(v);
                    ts.ctmask = Some(v);
                }
            }
        }
        _ => {
            let a = cur.arg(ctx, "a shift count")?;
            let n = a.s.parse::<u8>().ok().filter(|n| *n < 32);
            if n.is_none() {
                return Err(ctx.err_tok(&a, "a shift count (0-31)"));
            }
            ts.extra_opts = true;
        }
    }
    Ok(())
}

/// Is `s` a `--reject-with` type of REJECT (ip6tables' when `v6`)?
fn reject_type_ok(s: &str, v6: bool) -> bool {
    if v6 {
        matches!(
            s,
            "icmp6-no-route"
                | "no-route"
                | "icmp6-adm-prohibited"
                | "adm-prohibited"
                | "icmp6-addr-unreachable"
                | "addr-unreach"
                | "icmp6-port-unreachable"
                | "port-unreach"
                | "icmp6-policy-fail"
                | "policy-fail"
                | "icmp6-reject-route"
                | "reject-route"
                | "tcp-reset"
        )
    } else {
        matches!(
            s,
            "icmp-net-unreachable"
                | "net-unreach"
                | "icmp-host-unreachable"
                | "host-unreach"
                | "icmp-proto-unreachable"
                | "proto-unreach"
                | "icmp-port-unreachable"
                | "port-unreach"
                | "icmp-net-prohibited"
                | "net-prohib"
                | "icmp-host-prohibited"
                | "host-prohib"
                | "icmp-admin-prohibited"
                | "admin-prohib"
                | "tcp-reset"
        )
    }
}

/// A DNAT/SNAT `--to-destination`/`--to-source` argument.
fn parse_nat_range(s: &str, v6: bool) -> Option<NatRange> {
    // Forms: addr, addr-addr, addr:port, addr-addr:port-port, :port, [v6]:port, [v6]-[v6]:port
    let (addr_part, port_part): (&str, Option<&str>) = if v6 {
        if s.starts_with('[') {
            let close = s.rfind(']')?;
            let rest = &s[close + 1..];
            let a = &s[..=close];
            match rest.strip_prefix(':') {
                Some(p) => (a, Some(p)),
                None if rest.is_empty() => (a, None),
                None => return None,
            }
        } else if let Some(p) = s.strip_prefix(':') {
            ("", Some(p))
        } else {
            (s, None)
        }
    } else {
        match s.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        }
    };
    let strip = |x: &str| -> String { x.trim_start_matches('[').trim_end_matches(']').to_string() };
    let addr = if addr_part.is_empty() {
        None
    } else {
        let (a, b) = match addr_part.split_once("]-[") {
            Some((a, b)) => (strip(a), strip(b)),
            None => match addr_part.split_once('-') {
                Some((a, b)) if !v6 || !addr_part.starts_with('[') => (strip(a), strip(b)),
                _ => (strip(addr_part), strip(addr_part)),
            },
        };
        let lo = parse_addr(&a, v6)?;
        let hi = parse_addr(&b, v6)?;
        if lo > hi {
            return None;
        }
        Some((lo, hi))
    };
    let ports = match port_part {
        None => None,
        Some(p) => {
            let p = p.split('/').next()?; // `:port-port/base` offsets are not modelled beyond the range
            let r = match p.split_once('-') {
                Some((a, b)) => PortRange {
                    lo: a.parse().ok()?,
                    hi: b.parse().ok()?,
                },
                None => {
                    let n = p.parse().ok()?;
                    PortRange { lo: n, hi: n }
                }
            };
            if r.lo > r.hi {
                return None;
            }
            Some(r)
        }
    };
    if addr.is_none() && ports.is_none() {
        return None;
    }
    Some(NatRange {
        addr,
        v6,
        ports,
        persistent: false,
        random: false,
    })
}

/// The target of a rule whose `-j` named `name` (of kind `kind`), from its options `ts`;
/// `proto` is the rule's `-p`.
pub(super) fn finish_target(
    rc: &RuleCtx,
    kind: TargetKind,
    name: Tok,
    ts: TargetState,
    proto: Option<(u8, bool)>,
    diags: &mut Vec<Diagnostic>,
) -> Result<Target, ParseError> {
    let (ctx, table) = (rc.ctx, rc.table);
    nat_port_needs_proto(ctx, kind, name, &ts, proto)?;
    Ok(match kind {
        TargetKind::Accept => Target::Accept,
        // iptables: 'The "nat" table is not intended for filtering, the use of DROP is
        // therefore inhibited.' (refused by iptables-restore --test, legacy and nft).
        TargetKind::Drop if table == Table::Nat => {
            return Err(ctx.err_tok(
                &name,
                "a target other than DROP (table nat does not filter)",
            ))
        }
        TargetKind::Drop => Target::Drop,
        TargetKind::Return => Target::Return,
        TargetKind::Reject => Target::Reject(ts.reject_with.unwrap_or_else(|| {
            if ts.v6 {
                "icmp6-port-unreachable".into()
            } else {
                "icmp-port-unreachable".into()
            }
        })),
        TargetKind::Mark => {
            match ts.mark {
                Some(m) => Target::Mark(m),
                None => return Err(ctx.err_at(
                    name.off + name.s.len() + 1,
                    "a MARK option (--set-xmark, --set-mark, --and-mark, --or-mark, --xor-mark)",
                    "none",
                )),
            }
        }
        TargetKind::Connmark => connmark_target(ctx, name, ts)?,
        TargetKind::Dnat | TargetKind::Snat => {
            nat_only(rc, name, name.s)?;
            nat_target(ctx, kind, name, ts)?
        }
        TargetKind::Masquerade => {
            nat_only(rc, name, "MASQUERADE")?;
            Target::Masquerade {
                ports: ts.ports,
                random_fully: ts.random_fully,
            }
        }
        TargetKind::Redirect => {
            nat_only(rc, name, "REDIRECT")?;
            Target::Redirect { ports: ts.ports }
        }
        TargetKind::Notrack => Target::Notrack,
        TargetKind::Ct => {
            if ts.notrack {
                Target::Notrack
            } else {
                Target::NoEffect
            }
        }
        TargetKind::NoEffect => Target::NoEffect,
        TargetKind::Unknowable => Target::Unknowable(
            format!("-j {} (the verdict is decided in userspace)", name.s).into(),
        ),
        TargetKind::Chain => {
            if ts.extra_opts {
                diags.push(Diagnostic {
                    source: rc.src(),
                    message: format!(
                        "unsupported target `-j {}`; the rule is kept opaque and a packet reaching it gets UNKNOWN",
                        name.s
                    ),
                });
                Target::Opaque(name.s.into())
            } else {
                chain_target(rc.chains, table, name.s, false)
            }
        }
    })
}

/// The NAT targets refuse a port without a protocol that has ports: iptables 1.8.9 says
/// "Need TCP, UDP, SCTP or DCCP with port specification" unless `-p` is tcp, udp, sctp,
/// dccp or icmp (also in ip6tables, which checks protocol 1, not 58) or is negated
/// (observed with iptables-restore --test, legacy and nft).
fn nat_port_needs_proto(
    ctx: &Ctx,
    kind: TargetKind,
    name: Tok,
    ts: &TargetState,
    proto: Option<(u8, bool)>,
) -> Result<(), ParseError> {
    let has_port = ts.ports.is_some() || ts.ranges.iter().any(|r| r.ports.is_some());
    let port_proto = match proto {
        Some((_, true)) => true,
        Some((p, false)) => matches!(p, 1 | 6 | 17 | 33 | 132),
        None => false,
    };
    if has_port
        && !port_proto
        && matches!(
            kind,
            TargetKind::Dnat | TargetKind::Snat | TargetKind::Masquerade | TargetKind::Redirect
        )
    {
        return Err(ctx.err_tok(
            &name,
            format!(
                "`-p tcp`, `udp`, `sctp` or `dccp` before {} with a port",
                name.s
            ),
        ));
    }
    Ok(())
}

/// DNAT, SNAT, MASQUERADE and REDIRECT (`what`) are only valid in table nat.
fn nat_only(rc: &RuleCtx, name: Tok, what: &str) -> Result<(), ParseError> {
    if rc.table != Table::Nat {
        return Err(rc.ctx.err_tok(
            &name,
            format!(
                "a target valid in table {} ({what} is only valid in nat)",
                rc.table.name()
            ),
        ));
    }
    Ok(())
}

/// CONNMARK: exactly one of set, save and restore; with mark shifts it is not modelled.
fn connmark_target(ctx: &Ctx, name: Tok, ts: TargetState) -> Result<Target, ParseError> {
    let n = [ts.cm_set.is_some(), ts.cm_save, ts.cm_restore]
        .iter()
        .filter(|b| **b)
        .count();
    if n != 1 {
        return Err(ctx.err_at(
            name.off,
            "exactly one of --set-xmark/--set-mark/..., --save-mark, --restore-mark",
            format!("{n} of them"),
        ));
    }
    if ts.extra_opts {
        return Ok(Target::Unknowable(
            "CONNMARK with mark shifts (not modelled)".into(),
        ));
    }
    Ok(if let Some((value, mask)) = ts.cm_set {
        Target::Connmark(ConnmarkOp::Set { value, mask })
    } else if ts.cm_save {
        Target::Connmark(ConnmarkOp::Save {
            nfmask: ts.nfmask.unwrap_or(u32::MAX),
            ctmask: ts.ctmask.unwrap_or(u32::MAX),
        })
    } else {
        Target::Connmark(ConnmarkOp::Restore {
            nfmask: ts.nfmask.unwrap_or(u32::MAX),
            ctmask: ts.ctmask.unwrap_or(u32::MAX),
        })
    })
}

/// DNAT or SNAT: at least one `--to-destination`/`--to-source` range, each taking the
/// target's `--persistent` and `--random`.
fn nat_target(
    ctx: &Ctx,
    kind: TargetKind,
    name: Tok,
    ts: TargetState,
) -> Result<Target, ParseError> {
    if ts.ranges.is_empty() {
        return Err(ctx.err_at(
            name.off + name.s.len() + 1,
            if kind == TargetKind::Dnat {
                "--to-destination"
            } else {
                "--to-source"
            },
            "end of rule",
        ));
    }
    let mut ranges = ts.ranges;
    for r in &mut ranges {
        r.persistent = ts.persistent;
        r.random = ts.nat_random;
    }
    Ok(if kind == TargetKind::Dnat {
        Target::Dnat {
            ranges: ranges.into(),
        }
    } else {
        Target::Snat {
            ranges: ranges.into(),
            random_fully: ts.random_fully,
        }
    })
}

/// A jump/goto to a chain declared so far, else unresolved until the end of the table.
pub(super) fn chain_target(chains: &ChainMap, table: Table, name: &str, goto: bool) -> Target {
    match chains.get(name) {
        Some(id) if !crate::rule::builtin_chains(table).contains(&name) => {
            if goto {
                Target::Goto(id)
            } else {
                Target::Jump(id)
            }
        }
        _ => Target::Unresolved {
            name: name.into(),
            goto,
        },
    }
}
