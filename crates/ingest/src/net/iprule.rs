//! `ip rule [show]` (text) and `ip -j rule` (JSON).
//!
//! The layout follows iproute2 ip/iprule.c `print_rule`: `PRIO:\t[not ]from SRC[/LEN] [to DST]
//! [tos T] [fwmark M[/MASK]] [iif I [detached]] [oif O [detached]] [lookup [l3mdev-table]]
//! [uidrange A-B] [ipproto P] [sport A[-B]] [dport A[-B]] [tun_id N] [lookup TABLE
//! [suppress_prefixlength N] [suppress_ifgroup G]] [realms ...] [goto N [unresolved] | nop |
//! blackhole | unreachable | prohibit] [proto P]`. In JSON the same fields are `priority`,
//! `not` (null), `src`+`srclen`, `dst`+`dstlen`, `tos`, `fwmark`+`fwmask`, `iif`, `oif`,
//! `l3mdev` (null), `uid_start`/`uid_end`, `ipproto`, `sport` or `sport_start`/`sport_end`,
//! `dport`..., `table`, `suppress_prefixlen`, `suppress_ifgroup`, `goto`, `nop`, `action`,
//! `protocol`.

use std::sync::Arc;

use ipnet::IpNet;
use kubepath_model::net::{table_id, Family, NodeFact, NodeNet, Rule, RuleAction};
use kubepath_model::SourceRef;
use serde_json::Value;

use super::ipaddr::item_lines;
use super::text::{diag, err, parse_json_array, parse_prefix, parse_u32, Cursor, Line, Segment};
use crate::diag::{Diagnostic, ParseError, Severity};

/// Per-format structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRuleOutput {
    pub rules: Vec<Rule>,
}

fn is_rule_line(t: &str) -> bool {
    let t = t.trim_start();
    let Some((p, rest)) = t.split_once(':') else {
        return false;
    };
    !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && {
        let r = rest.trim_start();
        r.starts_with("from ") || r.starts_with("not ")
    }
}

pub fn sniff(seg: &Segment<'_>) -> bool {
    match seg.content().next() {
        Some(l) => {
            let t = l.text.trim_start();
            if t.starts_with('[') {
                return seg
                    .lines
                    .iter()
                    .take(20)
                    .any(|l| l.text.contains("\"priority\""));
            }
            is_rule_line(t)
        }
        None => false,
    }
}

/// For text output: the number of leading lines that are rule lines. None for JSON.
pub fn extent(seg: &Segment<'_>) -> Option<usize> {
    let first = seg.content().next()?.text.trim_start();
    if first.starts_with('[') {
        return None;
    }
    seg.lines
        .iter()
        .position(|l| {
            !l.text.trim().is_empty() && !is_rule_line(l.text) && !looks_like_bad_rule(l.text)
        })
        .or(Some(seg.lines.len()))
}

/// `N:` followed by anything: a rule line, possibly malformed (it stays with the rules so the
/// error names it).
fn looks_like_bad_rule(t: &str) -> bool {
    let t = t.trim_start();
    t.split_once(':')
        .is_some_and(|(p, _)| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

pub fn read(
    file: &Arc<str>,
    seg: &Segment<'_>,
    net: &mut NodeNet,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<&'static str>, ParseError> {
    if !sniff(seg) {
        return Ok(None);
    }
    let v6 = seg
        .command
        .is_some_and(|c| c.split_whitespace().any(|w| w == "-6"));
    let first = seg
        .content()
        .next()
        .map(|l| l.text.trim_start())
        .unwrap_or("");
    let (out, fmt) = if first.starts_with('[') {
        let (text, line0) = seg.text();
        (
            parse_json_rules(file, &text, line0, v6, diags)?,
            "ip-rule-json",
        )
    } else {
        (parse_text(file, &seg.lines, v6, diags)?, "ip-rule")
    };
    let src = SourceRef::new(
        file.clone(),
        seg.content().next().map(|l| l.no).unwrap_or(0),
    );
    if let Some(f) = seg.filter() {
        net.partial.push((NodeFact::Rules, src.clone(), f));
    }
    for r in out.rules {
        if !net.rules.iter().any(|o| {
            Rule {
                source: o.source.clone(),
                ..r.clone()
            } == *o
        }) {
            net.rules.push(r);
        }
    }
    net.read.entry(NodeFact::Rules).or_default().push(src);
    Ok(Some(fmt))
}

fn port_range(s: &str) -> Option<(u16, u16)> {
    match s.split_once('-') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => {
            let p = s.parse().ok()?;
            Some((p, p))
        }
    }
}

fn parse_table(c: &Cursor<'_, '_>, t: super::text::Tok<'_>) -> Result<u32, ParseError> {
    table_id(t.s).ok_or_else(|| c.error_at(t, "a table number or local/main/default (named tables from a custom rt_tables are not known)"))
}

fn parse_rule_line(
    file: &Arc<str>,
    line: Line<'_>,
    v6_hint: bool,
    diags: &mut Vec<Diagnostic>,
) -> Result<Rule, ParseError> {
    let mut c = Cursor::new(file, line);
    let p = c.expect("`PRIORITY:`")?;
    let priority =
        p.s.strip_suffix(':')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| c.error_at(p, "`PRIORITY:`"))?;
    parse_rule_at(&mut c, line, Some(priority), false, v6_hint, diags)
}

/// A rule's selectors and action from the cursor's position to the end of the line: one
/// grammar for `ip rule show` (`priority` = the `N:` that was printed before) and for
/// `ip rule add|del` (`priority` None: given by `priority|pref|order N` anywhere, else
/// `u32::MAX`, and without an action the kernel's default, `lookup main`; `man 8 ip-rule`).
/// For `ip rule del` (`del`) an action not given is `lookup 0`: iproute2 then sends no
/// action and table 0 (`RT_TABLE_UNSPEC`), which the kernel's rule lookup for deletion takes
/// as any, like every selector not given (`from all` is no selector).
pub(crate) fn parse_rule_at(
    c: &mut Cursor<'_, '_>,
    line: Line<'_>,
    priority: Option<u32>,
    del: bool,
    v6_hint: bool,
    diags: &mut Vec<Diagnostic>,
) -> Result<Rule, ParseError> {
    let file = c.file;
    let command = priority.is_none();
    let priority = priority.unwrap_or(u32::MAX);
    let mut r = Rule::new(
        if v6_hint { Family::Ipv6 } else { Family::Ipv4 },
        priority,
        RuleAction::Nop,
        SourceRef::new(file.clone(), line.no),
    );
    let mut have_action = false;
    let mut family_seen: Option<Family> = None;
    let pfx = |c: &mut Cursor<'_, '_>,
               what: &str,
               fam: &mut Option<Family>|
     -> Result<Option<IpNet>, ParseError> {
        let t = c.expect(what)?;
        if t.s == "all" {
            return Ok(None);
        }
        let n = parse_prefix(t.s).ok_or_else(|| c.error_at(t, what))?;
        *fam = Some(if n.addr().is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        });
        Ok(Some(n))
    };
    while let Some(t) = c.bump() {
        match t.s {
            "not" => r.not = true,
            "from" => r.from = pfx(c, "a source prefix or `all`", &mut family_seen)?,
            "to" => r.to = pfx(c, "a destination prefix or `all`", &mut family_seen)?,
            "tos" | "dsfield" => {
                let v = c.expect("a TOS value")?;
                r.tos = Some(tos_value(v.s).ok_or_else(|| c.error_at(v, "a TOS number or name"))?);
            }
            "fwmark" => {
                let v = c.expect("a firewall mark")?;
                let (m, k) = match v.s.split_once('/') {
                    Some((m, k)) => (parse_u32(m), parse_u32(k)),
                    None => (parse_u32(v.s), Some(u32::MAX)),
                };
                match (m, k) {
                    (Some(m), Some(k)) => r.fwmark = Some((m, k)),
                    _ => return Err(c.error_at(v, "a firewall mark `MARK[/MASK]`")),
                }
            }
            "iif" => r.iif = Some(c.expect("an interface name")?.s.to_string()),
            "oif" => r.oif = Some(c.expect("an interface name")?.s.to_string()),
            "[detached]" => {
                // The interface named by iif/oif does not exist: the kernel never matches the
                // rule (fib_rule_match: FIB_RULE_IIF_DETACHED / FIB_RULE_OIF_DETACHED). Kept
                // with a name no interface has, so a lookup by name never matches either.
                let which = c
                    .toks
                    .get(c.pos.saturating_sub(3))
                    .map(|t| t.s)
                    .unwrap_or("");
                let slot = if which == "oif" {
                    &mut r.oif
                } else {
                    &mut r.iif
                };
                if let Some(n) = slot.as_mut() {
                    diags.push(diag(
                        Severity::Note,
                        file,
                        line.no,
                        t.col,
                        format!(
                            "{which} {n} is detached (no such interface): this rule never matches"
                        ),
                    ));
                    n.push_str(" [detached]");
                }
            }
            "[unresolved]" => {}
            "uidrange" => {
                let v = c.expect("a uid range A-B")?;
                let rg =
                    v.s.split_once('-')
                        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
                r.uidrange = Some(rg.ok_or_else(|| c.error_at(v, "a uid range A-B"))?);
            }
            "ipproto" => r.ipproto = Some(c.expect("an IP protocol")?.s.to_string()),
            "sport" | "dport" => {
                let v = c.expect("a port or port range")?;
                let rg = port_range(v.s).ok_or_else(|| c.error_at(v, "a port or port range"))?;
                if t.s == "sport" {
                    r.sport = Some(rg);
                } else {
                    r.dport = Some(rg);
                }
            }
            "tun_id" => {
                let v = c.expect("a tunnel id")?;
                diags.push(diag(
                    Severity::Warning,
                    file,
                    line.no,
                    t.col,
                    format!("`tun_id {}` (metadata tunnel key) is not modelled: the rule is treated as if it had no tun_id selector", v.s),
                ));
            }
            "lookup" | "table" => {
                let v = c.expect("a table")?;
                if v.s == "[l3mdev-table]" {
                    r.l3mdev = true;
                } else {
                    r.action = RuleAction::Lookup(parse_table(c, v)?);
                    have_action = true;
                }
            }
            "l3mdev" => r.l3mdev = true,
            "priority" | "pref" | "preference" | "order" if command => {
                let v = c.expect("a rule priority")?;
                r.priority = parse_u32(v.s).ok_or_else(|| c.error_at(v, "a rule priority"))?;
            }
            "dev" if command => r.iif = Some(c.expect("an interface name")?.s.to_string()),
            "suppress_prefixlength" => {
                r.suppress_prefixlength = Some(c.expect_parse("a prefix length")?)
            }
            "suppress_ifgroup" => {
                r.suppress_ifgroup = Some(c.expect("an interface group")?.s.to_string())
            }
            "realms" => {
                c.expect("realms")?;
            }
            "goto" => {
                let v = c.expect("a rule priority")?;
                r.action =
                    RuleAction::Goto(v.s.parse().map_err(|_| c.error_at(v, "a rule priority"))?);
                have_action = true;
            }
            "nop" => {
                r.action = RuleAction::Nop;
                have_action = true;
            }
            "blackhole" => {
                r.action = RuleAction::Blackhole;
                have_action = true;
            }
            "unreachable" => {
                r.action = RuleAction::Unreachable;
                have_action = true;
            }
            "prohibit" => {
                r.action = RuleAction::Prohibit;
                have_action = true;
            }
            "proto" | "protocol" => r.proto = Some(c.expect("a protocol")?.s.to_string()),
            "map-to" | "masquerade" | "nat" => {
                return Err(c.error_at(t, "a supported rule action (NAT rules were removed from Linux 2.6 and are not modelled)"));
            }
            _ => {
                return Err(c.error_at(
                    t,
                    "a rule selector or action (from, to, fwmark, iif, oif, lookup, goto, ...)",
                ))
            }
        }
    }
    if !have_action && command && del {
        r.action = RuleAction::Lookup(0);
    } else if !have_action && command {
        // iproute2 asks for `lookup main` when a rule is added without an action.
        r.action = RuleAction::Lookup(254);
    } else if !have_action && r.l3mdev {
        // `lookup [l3mdev-table]` alone: the table comes from the VRF device (l3mdev_fib_table).
        r.action = RuleAction::Nop;
    } else if !have_action {
        return Err(err(
            file,
            line.no,
            c.eol,
            "a rule action (lookup TABLE, goto, nop, blackhole, unreachable, prohibit)",
            "end of line",
        ));
    }
    if let Some(f) = family_seen {
        r.family = f;
    }
    Ok(r)
}

pub fn parse_text(
    file: &Arc<str>,
    lines: &[Line<'_>],
    v6_hint: bool,
    diags: &mut Vec<Diagnostic>,
) -> Result<IpRuleOutput, ParseError> {
    let mut rules = Vec::new();
    for &l in lines {
        if l.text.trim().is_empty() {
            continue;
        }
        rules.push(parse_rule_line(file, l, v6_hint, diags)?);
    }
    Ok(IpRuleOutput { rules })
}

/// A TOS value as `ip rule` prints it: a number, or a name of iproute2's
/// `/etc/iproute2/rt_dsfield`, which it prints unless given `-N` (`rtnl_dsfield_n2a`;
/// review 11: `"tos":"AF11"` made the whole JSON output unreadable). The names are the
/// DSCP code points shifted into the TOS byte (RFC 2597 AFxy, RFC 2474 CSx, RFC 3246 EF).
fn tos_value(s: &str) -> Option<u8> {
    if let Some(n) = parse_u32(s) {
        return u8::try_from(n).ok();
    }
    let dscp: u8 = match s {
        "default" => 0,
        "AF11" => 10,
        "AF12" => 12,
        "AF13" => 14,
        "AF21" => 18,
        "AF22" => 20,
        "AF23" => 22,
        "AF31" => 26,
        "AF32" => 28,
        "AF33" => 30,
        "AF41" => 34,
        "AF42" => 36,
        "AF43" => 38,
        "CS1" => 8,
        "CS2" => 16,
        "CS3" => 24,
        "CS4" => 32,
        "CS5" => 40,
        "CS6" => 48,
        "CS7" => 56,
        "EF" => 46,
        _ => return None,
    };
    Some(dscp << 2)
}

fn jnum(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => parse_u32(s),
        _ => None,
    }
}

pub fn parse_json_rules(
    file: &Arc<str>,
    text: &str,
    line0: u32,
    v6_hint: bool,
    diags: &mut Vec<Diagnostic>,
) -> Result<IpRuleOutput, ParseError> {
    let items = parse_json_array(file, text, line0, "a JSON array of rules (`ip -j rule`)")?;
    let lines = item_lines(text, line0);
    let mut rules = Vec::new();
    for (n, it) in items.iter().enumerate() {
        let line = lines.get(n).copied().unwrap_or(line0);
        let bad = |what: &str, found: &str| err(file, line, 1, what.to_string(), found.to_string());
        let get = |k: &str| it.get(k);
        let s = |k: &str| it.get(k).and_then(Value::as_str);
        let priority = get("priority")
            .and_then(jnum)
            .ok_or_else(|| bad("a rule object with `priority`", "an object without it"))?;
        let mut fam: Option<Family> = None;
        let mut pfx = |addr: &str, len: &str| -> Result<Option<IpNet>, ParseError> {
            // Absent or "all": any address; present, it must be a string (review 9: `null` or
            // a list was read as "all", a blanket rule).
            let text = match get(addr) {
                None => None,
                Some(v) => Some(
                    v.as_str()
                        .ok_or_else(|| bad("an address", &v.to_string()))?,
                ),
            };
            match text {
                None | Some("all") => Ok(None),
                Some(a) => {
                    let ip = super::text::parse_ip(a).ok_or_else(|| bad("an address", a))?;
                    // Absent: a host prefix, as iproute2 prints it; present, it must be read
                    // (review 8: `-1`, `24.0`, `"abc"` or 2^32+24 were taken as a host prefix).
                    let l = match get(len) {
                        None => u32::from(if ip.is_ipv4() { 32u8 } else { 128 }),
                        Some(v) => jnum(v).ok_or_else(|| bad("a prefix length", &v.to_string()))?,
                    };
                    fam = Some(Family::of(&ip));
                    // A length above 255 must not wrap into a valid one (288 as u8 is 32).
                    u8::try_from(l)
                        .ok()
                        .and_then(|l8| IpNet::new(ip, l8).ok())
                        .map(Some)
                        .ok_or_else(|| bad("a valid prefix length", &l.to_string()))
                }
            }
        };
        let from = pfx("src", "srclen")?;
        let to = pfx("dst", "dstlen")?;
        let range = |single: &str| -> Option<(u32, u32)> {
            if let Some(p) = get(single).and_then(jnum) {
                return Some((p, p));
            }
            Some((
                get(&format!("{single}_start")).and_then(jnum)?,
                get(&format!("{single}_end")).and_then(jnum)?,
            ))
        };
        let port = |k: &str| {
            range(k).and_then(|(a, b)| Some((u16::try_from(a).ok()?, u16::try_from(b).ok()?)))
        };
        let action = if let Some(g) = get("goto") {
            RuleAction::Goto(jnum(g).ok_or_else(|| bad("a goto target", &g.to_string()))?)
        } else if let Some(a) = s("action") {
            match a {
                "blackhole" => RuleAction::Blackhole,
                "unreachable" => RuleAction::Unreachable,
                "prohibit" => RuleAction::Prohibit,
                other => return Err(bad("a rule action", other)),
            }
        } else if get("nop").is_some() {
            RuleAction::Nop
        } else if let Some(t) = s("table") {
            RuleAction::Lookup(
                table_id(t).ok_or_else(|| bad("a table number or local/main/default", t))?,
            )
        } else if get("l3mdev").is_some() {
            RuleAction::Nop
        } else {
            diags.push(diag(
                Severity::Warning,
                file,
                line,
                0,
                "rule without an action; taken as nop",
            ));
            RuleAction::Nop
        };
        if let Some(t) = get("tun_id") {
            diags.push(diag(
                Severity::Warning,
                file,
                line,
                0,
                format!("`tun_id {t}` (metadata tunnel key) is not modelled: the rule is treated as if it had no tun_id selector"),
            ));
        }
        // A selector present but unreadable refuses the rule: dropped, the rule would select
        // more than it does (review 10: `"fwmark":null`, `"iif":["eth9"]` made it match all).
        let text_of = |k: &str| -> Result<Option<&str>, ParseError> {
            match get(k) {
                None => Ok(None),
                Some(v) => v
                    .as_str()
                    .map(Some)
                    .ok_or_else(|| bad(&format!("a string for `{k}`"), &v.to_string())),
            }
        };
        let num_of = |k: &str| -> Result<Option<u32>, ParseError> {
            match get(k) {
                None => Ok(None),
                Some(v) => jnum(v)
                    .map(Some)
                    .ok_or_else(|| bad(&format!("a number for `{k}`"), &v.to_string())),
            }
        };
        let (iif, oif) = (text_of("iif")?, text_of("oif")?);
        let fwmark = match num_of("fwmark")? {
            Some(m) => Some((m, num_of("fwmask")?.unwrap_or(u32::MAX))),
            None => None,
        };
        let tos = match get("tos") {
            None => None,
            Some(v) => Some(
                match v {
                    Value::String(t) => tos_value(t),
                    _ => jnum(v).and_then(|t| u8::try_from(t).ok()),
                }
                .ok_or_else(|| bad("a TOS number or name", &v.to_string()))?,
            ),
        };
        let suppress_prefixlength = num_of("suppress_prefixlen")?;
        let uidrange = match (num_of("uid_start")?, num_of("uid_end")?) {
            (Some(a), Some(b)) => Some((a, b)),
            _ => None,
        };
        rules.push(Rule {
            family: fam.unwrap_or(if v6_hint { Family::Ipv6 } else { Family::Ipv4 }),
            priority,
            not: get("not").is_some(),
            from,
            to,
            // A detached iif/oif never matches (see the text reader).
            iif: iif.map(|n| {
                if get("iif_detached").is_some() {
                    format!("{n} [detached]")
                } else {
                    n.to_string()
                }
            }),
            oif: oif.map(|n| {
                if get("oif_detached").is_some() {
                    format!("{n} [detached]")
                } else {
                    n.to_string()
                }
            }),
            fwmark,
            tos,
            ipproto: s("ipproto").map(str::to_string),
            sport: port("sport"),
            dport: port("dport"),
            uidrange,
            l3mdev: get("l3mdev").is_some(),
            action,
            suppress_prefixlength,
            suppress_ifgroup: s("suppress_ifgroup").map(str::to_string),
            proto: s("protocol").map(str::to_string),
            source: SourceRef::new(file.clone(), line),
        });
    }
    Ok(IpRuleOutput { rules })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::text::segments;

    fn parse(t: &str) -> Result<IpRuleOutput, ParseError> {
        let f: Arc<str> = "t".into();
        parse_text(&f, &segments(t)[0].lines, false, &mut Vec::new())
    }

    #[test]
    fn defaults_and_selectors() {
        let o = parse("0:\tfrom all lookup local\n100:\tnot from 10.0.0.0/8 iif eth1 fwmark 0x4000/0x4000 lookup 100\n200:\tfrom all to 1.2.3.0/24 goto 300\n300:\tfrom all ipproto tcp dport 1000-2000 unreachable\n1000:\tfrom all lookup [l3mdev-table]\n32764:\tfrom all lookup main suppress_prefixlength 0\n32766:\tfrom all lookup main\n").unwrap();
        assert_eq!(o.rules[0].action, RuleAction::Lookup(255));
        let r = &o.rules[1];
        assert!(r.not);
        assert_eq!(r.fwmark, Some((0x4000, 0x4000)));
        assert_eq!(r.iif.as_deref(), Some("eth1"));
        assert_eq!(r.action, RuleAction::Lookup(100));
        assert_eq!(o.rules[2].action, RuleAction::Goto(300));
        assert_eq!(o.rules[3].dport, Some((1000, 2000)));
        assert_eq!(o.rules[3].action, RuleAction::Unreachable);
        assert!(o.rules[4].l3mdev);
        assert_eq!(o.rules[5].suppress_prefixlength, Some(0));
    }

    #[test]
    fn missing_action_is_error() {
        let e = parse("5:\tfrom all\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.expected.contains("rule action"));
    }

    #[test]
    fn json() {
        let f: Arc<str> = "t".into();
        let t = r#"[{"priority":0,"src":"all","table":"local"},{"priority":5250,"src":"all","fwmark":"0x80000","fwmask":"0xff0000","action":"unreachable"},{"priority":32765,"not":null,"src":"10.0.0.0","srclen":8,"fwmark":"0x1","table":"100"},{"priority":32764,"src":"all","table":"main","suppress_prefixlen":0}]"#;
        let o = parse_json_rules(&f, t, 1, false, &mut Vec::new()).unwrap();
        assert_eq!(o.rules[1].fwmark, Some((0x80000, 0xff0000)));
        assert_eq!(o.rules[1].action, RuleAction::Unreachable);
        assert!(o.rules[2].not);
        assert_eq!(
            o.rules[2].from.map(|p| p.to_string()).as_deref(),
            Some("10.0.0.0/8")
        );
        assert_eq!(o.rules[2].fwmark, Some((1, u32::MAX)));
        assert_eq!(o.rules[3].suppress_prefixlength, Some(0));
    }

    #[test]
    fn json_prefix_length_above_255_is_refused_not_wrapped() {
        let f: Arc<str> = "t".into();
        let t = r#"[{"priority":100,"src":"10.0.0.0","srclen":288,"table":"100"},{"priority":200,"src":"10.0.0.0","srclen":8,"table":"100"}]"#;
        let mut diags = Vec::new();
        let read = parse_json_rules(&f, t, 1, false, &mut diags);
        // 288 is no prefix length: the rule is refused (an error, or skipped with a
        // diagnostic), never read as 10.0.0.0/32 (288 mod 256).
        if let Ok(o) = read {
            assert!(o.rules.iter().all(|r| r.priority != 100), "{:?}", o.rules);
            assert!(!diags.is_empty());
            assert!(o.rules.iter().any(|r| r.priority == 200));
        }
    }

    /// Reviews 8-11: a field of `ip -j rule` that is present but unreadable refuses its rule;
    /// it is never dropped (the rule would select more) nor wrapped; absent fields keep their
    /// defaults; TOS names as iproute2 prints them are read.
    #[test]
    fn json_fields_present_but_unreadable_refuse_the_rule() {
        let f: Arc<str> = "t".into();
        let refused = |rule: &str| {
            let t = format!("[{rule},{{\"priority\":200,\"src\":\"all\",\"table\":\"main\"}}]");
            let mut diags = Vec::new();
            match parse_json_rules(&f, &t, 1, false, &mut diags) {
                Err(_) => true,
                Ok(o) => o.rules.iter().all(|r| r.priority != 100) && !diags.is_empty(),
            }
        };
        for len in ["288", "4294967320", "-1", "24.0", "1e2", "null", "\"abc\""] {
            let rule =
                format!(r#"{{"priority":100,"src":"10.0.0.0","srclen":{len},"table":"100"}}"#);
            assert!(refused(&rule), "{rule}");
        }
        for dst in ["null", "[\"10.200.0.0\"]", "24"] {
            let rule = format!(r#"{{"priority":100,"dst":{dst},"dstlen":24,"action":"prohibit"}}"#);
            assert!(refused(&rule), "{rule}");
        }
        for sel in [
            r#""fwmark":null"#,
            r#""fwmark":"0xzz""#,
            r#""fwmark":["0x99"]"#,
            r#""iif":["eth9"]"#,
            r#""oif":null"#,
            r#""tos":"XX""#,
            r#""tos":300"#,
        ] {
            let rule = format!(r#"{{"priority":100,"src":"all",{sel},"action":"prohibit"}}"#);
            assert!(refused(&rule), "{rule}");
        }
        // Absent lengths are host prefixes; TOS names are read.
        let t = r#"[{"priority":100,"src":"10.0.0.7","table":"100"},{"priority":101,"src":"all","tos":"AF11","action":"prohibit"},{"priority":102,"src":"all","tos":"0x04","table":"main"}]"#;
        let o = parse_json_rules(&f, t, 1, false, &mut Vec::new()).unwrap();
        assert_eq!(
            o.rules[0].from.map(|p| p.to_string()).as_deref(),
            Some("10.0.0.7/32")
        );
        assert_eq!((o.rules[1].tos, o.rules[2].tos), (Some(0x28), Some(0x04)));
        assert_eq!(tos_value("EF"), Some(0xb8));
        assert_eq!(tos_value("CS1"), Some(0x20));
    }
}
