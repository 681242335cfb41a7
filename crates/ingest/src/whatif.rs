//! `--what-if` changes, read with the same iproute2 grammar as the snapshot's `ip route` and
//! `ip rule` outputs ([`crate::net::iproute`], [`crate::net::iprule`]): `ip route
//! add|del|replace ...`, `ip rule add|del ...` and `sysctl -w key=value`, on every node or,
//! prefixed `NODE:`, on one node.

use std::sync::Arc;

use kubepath_model::change::{Change, Item, Op};

use crate::diag::ParseError;
use crate::net::iproute::parse_route_at;
use crate::net::iprule::parse_rule_at;
use crate::net::text::{Cursor, Line};

/// The pseudo file name errors of a `--what-if` carry.
pub const WHAT_IF_FILE: &str = "--what-if";

/// Parses one `--what-if` argument. Errors name the column in `text` (1-based).
pub fn parse(text: &str) -> Result<Change, ParseError> {
    let file: Arc<str> = Arc::from(WHAT_IF_FILE);
    // `NODE:` prefix: a node name followed by ':' before the command (IPv6 literals only occur
    // after the command word, so the first ':' before a space is the node separator). It is
    // blanked out, so columns still count from the start of `text`.
    let (node, masked) = match text.split_once(':') {
        Some((n, _))
            if !n.trim().is_empty()
                && !n.trim().contains(char::is_whitespace)
                && !matches!(n.trim(), "ip" | "sysctl") =>
        {
            let blank = " ".repeat(n.len() + 1);
            (
                Some(n.trim().to_string()),
                format!("{blank}{}", &text[n.len() + 1..]),
            )
        }
        _ => (None, text.to_string()),
    };
    let line = Line {
        no: 1,
        text: &masked,
    };
    let mut c = Cursor::new(&file, line);
    let mut diags = Vec::new();
    let cmd = c.expect("`ip route ...`, `ip rule ...` or `sysctl -w key=value`")?;
    // `-4` / `-6`: the family every address of the command must have.
    let mut explicit: Option<kubepath_model::net::Family> = None;
    let (op, item) = match cmd.s {
        "ip" => {
            let mut v6 = false;
            while let Some(f) = c.peek().filter(|w| w.starts_with('-')) {
                match f {
                    "-4" => explicit = Some(kubepath_model::net::Family::Ipv4),
                    "-6" => {
                        v6 = true;
                        explicit = Some(kubepath_model::net::Family::Ipv6);
                    }
                    _ => return Err(c.error("`-4`, `-6`, `route` or `rule`")),
                }
                c.bump();
            }
            let obj = c.expect("`route` or `rule`")?;
            let op_tok = c.expect("add, del or replace")?;
            let op = match op_tok.s {
                "add" | "append" => Op::Add,
                "del" | "delete" => Op::Del,
                "replace" | "change" => Op::Replace,
                _ => return Err(c.error_at(op_tok, "add, del or replace")),
            };
            let item = match obj.s {
                "route" | "r" | "ro" | "rou" | "rout" => {
                    let mut r = parse_route_at(&mut c, line, v6, &mut diags)?;
                    if r.dst != r.dst.trunc() {
                        // The kernel: "Invalid prefix for given prefix length".
                        return Err(ParseError {
                            file: file.clone(),
                            line: 1,
                            column: 1,
                            expected: format!(
                                "a destination prefix without host bits ({})",
                                r.dst.trunc()
                            ),
                            found: r.dst.to_string(),
                        });
                    }
                    if r.table == 0 {
                        // `table 0` (RT_TABLE_UNSPEC): the kernel adds the route to main.
                        r.table = 254;
                    }
                    r.source = kubepath_model::SourceRef::new(WHAT_IF_FILE, 0);
                    Item::Route(r)
                }
                "rule" | "ru" | "rul" => {
                    let mut r = parse_rule_at(&mut c, line, None, op == Op::Del, v6, &mut diags)?;
                    r.source = kubepath_model::SourceRef::new(WHAT_IF_FILE, 0);
                    Item::Rule(r)
                }
                _ => return Err(c.error_at(obj, "`route` or `rule`")),
            };
            (op, item)
        }
        "sysctl" => (Op::Replace, parse_sysctl(&mut c)?),
        _ => {
            return Err(c.error_at(
                cmd,
                "`ip route ...`, `ip rule ...` or `sysctl -w key=value`",
            ))
        }
    };
    if let Some(why) = mixed_families(&item, explicit) {
        // iproute2 refuses these too ("inet address is expected rather than ...").
        return Err(ParseError {
            file: file.clone(),
            line: 1,
            column: 1,
            expected: "addresses of one family (IPv4 or IPv6) in one command".into(),
            found: why,
        });
    }
    Ok(Change {
        text: text.trim().to_string(),
        node,
        op,
        item,
    })
}

/// A route or rule whose addresses are not all of the command's family (`-4`/`-6` or the
/// first address): what iproute2 rejects, said as "found".
fn mixed_families(item: &Item, explicit: Option<kubepath_model::net::Family>) -> Option<String> {
    use kubepath_model::net::Family;
    let fam = |a: std::net::IpAddr| {
        if a.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        }
    };
    let name = |f: Family| match f {
        Family::Ipv4 => "IPv4",
        Family::Ipv6 => "IPv6",
    };
    let (want, addrs): (Family, Vec<std::net::IpAddr>) = match item {
        Item::Route(r) => {
            let mut a = vec![r.dst.addr()];
            a.extend(r.gateway);
            a.extend(r.prefsrc);
            a.extend(r.nexthops.iter().filter_map(|n| n.gateway));
            (r.family, a)
        }
        Item::Rule(r) => (
            r.family,
            r.from.iter().chain(r.to.iter()).map(|n| n.addr()).collect(),
        ),
        Item::Sysctl(..) => return None,
    };
    let want = explicit.unwrap_or(want);
    addrs.into_iter().find(|a| fam(*a) != want).map(|a| {
        format!(
            "the {} address {a} in an {} command",
            name(fam(a)),
            name(want)
        )
    })
}

/// `[-w] key=value` (also `key = value`), the key in dotted or slashed form. The key must be
/// a kernel parameter name (`net.ipv4.conf.eth0.rp_filter`) and the value a number for the
/// parameters the trace reads.
fn parse_sysctl(c: &mut Cursor<'_, '_>) -> Result<Item, ParseError> {
    if c.peek() == Some("-w") {
        c.bump();
    }
    let kv = c.expect("key=value")?;
    let (key, value, tok) = match kv.s.split_once('=') {
        Some((k, v)) if !v.is_empty() => (k.to_string(), v.to_string(), kv),
        Some((k, _)) => {
            let v = c.expect("a value after `=`")?;
            (k.to_string(), v.s.to_string(), v)
        }
        None => {
            let eq = c.expect("`=` and a value")?;
            if eq.s == "=" {
                let v = c.expect("a value after `=`")?;
                (kv.s.to_string(), v.s.to_string(), v)
            } else if let Some(v) = eq.s.strip_prefix('=') {
                (kv.s.to_string(), v.to_string(), eq)
            } else {
                return Err(c.error_at(eq, "key=value"));
            }
        }
    };
    if let Some(extra) = c.bump() {
        return Err(c.error_at(extra, "end of the command (one key=value)"));
    }
    let key = key.replace('/', ".");
    let valid_key = key.split('.').count() >= 2
        && key.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_-@:".contains(ch))
        });
    if !valid_key {
        return Err(c.error_at(
            kv,
            "a kernel parameter name such as net.ipv4.conf.eth0.rp_filter",
        ));
    }
    let Some(max) = sysctl_max(&key) else {
        return Err(c.error_at(
            kv,
            "a kernel parameter the simulation reads: net.ipv4.ip_forward, net.ipv4.conf.IFACE.rp_filter, net.ipv4.conf.IFACE.forwarding, net.ipv4.conf.IFACE.proxy_arp or net.ipv4.fib_multipath_hash_policy (IFACE: an interface, `all` or `default`)",
        ));
    };
    if !value.trim().parse::<u32>().is_ok_and(|v| v <= max) {
        let range = if max == 1 {
            "0 or 1".to_string()
        } else {
            format!("0 to {max}")
        };
        let mut e = c.error_at(tok, format!("{range} for {key}"));
        // Point at the value, not at the whole `key=value` token it may sit in.
        if let Some(at) = tok.s.find('=') {
            e.column += at as u32 + 1;
        }
        e.found = format!("`{value}`");
        return Err(e);
    }
    Ok(Item::Sysctl(key, value))
}

/// The largest value of a sysctl the simulation reads (their kernel ranges,
/// Documentation/networking/ip-sysctl.rst), `None` for any other key: a write to a key nothing
/// reads would change nothing, silently.
fn sysctl_max(key: &str) -> Option<u32> {
    match key {
        "net.ipv4.ip_forward" => return Some(1),
        "net.ipv4.fib_multipath_hash_policy" => return Some(3),
        _ => {}
    }
    let (iface, param) = key.strip_prefix("net.ipv4.conf.")?.rsplit_once('.')?;
    if iface.is_empty() {
        return None;
    }
    match param {
        "rp_filter" => Some(2),
        "forwarding" | "proxy_arp" => Some(1),
        _ => None,
    }
}

/// The interface a per-interface sysctl key names (`net.ipv4.conf.eth0.rp_filter` -> `eth0`),
/// `None` for a global key and for `all` and `default`: the caller checks that the node has it.
pub fn sysctl_interface(key: &str) -> Option<&str> {
    let (iface, _) = key.strip_prefix("net.ipv4.conf.")?.rsplit_once('.')?;
    (!matches!(iface, "all" | "default")).then_some(iface)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #11 (review): addresses of two families in one command are refused, as
    /// iproute2 refuses them.
    #[test]
    fn mixed_families_are_refused() {
        for bad in [
            "ip -6 route add 10.0.0.0/8 via fe80::1",
            "ip route add 10.210.150.87/32 via fe80::1 dev eth0",
            "ip route add 2001:db8::/64 via 10.33.151.65",
            "ip -4 rule add to 2001:db8::/64 lookup 100",
            "ip rule add from 2001:db8::/64 to 10.210.150.80/28 lookup 100",
            "ip -6 route add 10.210.150.87/32 via 10.33.151.65",
            "ip -6 rule add to 10.210.150.80/28 lookup 100",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.expected.contains("one family"), "{bad}: {e}");
        }
        // Host bits are refused, as the kernel refuses them; table 0 is main.
        let e = parse("ip route add 10.210.150.87/24 via 10.33.151.65").expect_err("host bits");
        assert!(e.expected.contains("10.210.150.0/24"), "{e}");
        assert_eq!(
            route("ip route add 10.210.150.0/24 via 10.33.151.65 table 0").table,
            254
        );
        for good in [
            "ip route add 10.210.150.87/32 via 10.33.151.65",
            "ip -6 route add 2001:db8::/64 via fe80::1 dev eth0",
            "ip -4 rule add to 10.0.0.0/8 lookup 100",
            "ip rule add from 2001:db8::/64 lookup 100",
        ] {
            parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }
    use kubepath_model::net::RuleAction;

    fn route(text: &str) -> kubepath_model::net::Route {
        match parse(text).unwrap().item {
            Item::Route(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn rule(text: &str) -> kubepath_model::net::Rule {
        match parse(text).unwrap().item {
            Item::Rule(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn routes_as_the_operator_types_them() {
        let r = route("ip route add 10.210.150.87/32 via 10.33.151.65");
        assert_eq!(r.dst.to_string(), "10.210.150.87/32");
        assert_eq!(r.gateway, Some("10.33.151.65".parse().unwrap()));
        assert_eq!(r.dev, None);
        assert_eq!(r.table, 254);
        let r = route("ip route add default via 10.33.151.65 dev ccd_ecfe_om table 100");
        assert_eq!(r.dst.prefix_len(), 0);
        assert_eq!(r.dev.as_deref(), Some("ccd_ecfe_om"));
        assert_eq!(r.table, 100);
        // Host bits are refused as the kernel refuses them (fib_table_insert: "Invalid prefix
        // for given prefix length"; checked with iproute2 6.1 in a namespace).
        assert!(parse("ip route add 10.0.0.5/24 dev eth0").is_err());
        assert_eq!(
            route("ip route add 10.0.0.5 dev eth0").dst.to_string(),
            "10.0.0.5/32"
        );
        // `default` with an IPv6 gateway is ::/0.
        assert!(route("ip route add default via fd00::1")
            .dst
            .addr()
            .is_ipv6());
        // Multipath on one line.
        let r = route("ip route replace default nexthop via 10.1.0.1 dev eth0 weight 2 nexthop via 10.2.0.1 dev eth1");
        assert_eq!(r.nexthops.len(), 2);
        assert_eq!(r.nexthops[0].weight, 2);
        // What the snapshot reader knows, the what-if knows (tos, metric, proto, src).
        let r = route(
            "ip route add 10.9.0.0/16 via 10.1.0.1 tos 0x10 metric 5 proto static src 10.1.0.11",
        );
        assert_eq!((r.tos, r.metric), (Some(16), Some(5)));
    }

    #[test]
    fn rules_as_the_operator_types_them() {
        let r = rule("ip rule add to 10.210.150.80/28 lookup 100 priority 1100");
        assert_eq!(r.priority, 1100);
        assert_eq!(r.to.unwrap().to_string(), "10.210.150.80/28");
        assert_eq!(r.action, RuleAction::Lookup(100));
        // No priority, no action: the kernel's choice and `lookup main`.
        let r = rule("ip rule add from 10.0.0.0/8");
        assert_eq!(
            (r.priority, r.action.clone()),
            (u32::MAX, RuleAction::Lookup(254))
        );
        // `from all ... pref N` deletes by priority (#10: it used to be refused).
        let r = rule("ip rule del from all to 10.9.0.0/16 lookup 100 pref 1000");
        assert_eq!((r.from, r.priority), (None, 1000));
        // `del` without an action: table 0 (RT_TABLE_UNSPEC), any action, as the kernel does.
        let r = rule("ip rule del from all pref 1000");
        assert_eq!(
            (r.from, r.priority, r.action.clone()),
            (None, 1000, RuleAction::Lookup(0))
        );
        assert_eq!(rule("ip rule del pref 1000"), r);
        // Selectors the reader knows: ipproto, sport/dport, tos, fwmark/mask, iif/oif.
        let r = rule("ip rule add ipproto tcp dport 80-90 fwmark 0x4000/0x4000 iif eth0 lookup 7");
        assert_eq!(r.ipproto.as_deref(), Some("tcp"));
        assert_eq!(r.dport, Some((80, 90)));
        assert_eq!(r.fwmark, Some((0x4000, 0x4000)));
        assert_eq!(r.iif.as_deref(), Some("eth0"));
    }

    #[test]
    fn node_prefix_and_sysctl() {
        let c = parse("n1:sysctl -w net.ipv4.conf.eth0.rp_filter=2").unwrap();
        assert_eq!(c.node.as_deref(), Some("n1"));
        assert_eq!(
            c.item,
            Item::Sysctl("net.ipv4.conf.eth0.rp_filter".into(), "2".into())
        );
        let c = parse("sysctl net/ipv4/ip_forward=1").unwrap();
        assert_eq!(
            c.item,
            Item::Sysctl("net.ipv4.ip_forward".into(), "1".into())
        );
        let c = parse("node-a:ip route add 10.0.0.0/8 via 10.1.0.1").unwrap();
        assert_eq!(c.node.as_deref(), Some("node-a"));
    }

    #[test]
    fn errors_name_the_column_of_the_offending_word() {
        let e = parse("ip route add 10.0.0.0/8 vai 10.1.0.1").unwrap_err();
        assert_eq!((e.column, e.found.as_str()), (25, "`vai`"));
        let e = parse("n1:ip rule add to 10.0.0.0/8 lookup").unwrap_err();
        assert_eq!(e.found, "end of line");
        assert_eq!(e.column, 36);
        let e = parse("ip route flush").unwrap_err();
        assert_eq!(e.column, 10);
        let e = parse("iptables -F").unwrap_err();
        assert_eq!(e.column, 1);
        // sysctl keys and values are checked.
        assert!(parse("sysctl -w net.ipv4.conf.eth0.rp_filter=7").is_err());
        assert!(parse("sysctl -w rp_filter").is_err());
        assert!(parse("sysctl -w net.ipv4.ip_forward=yes").is_err());
        assert!(parse("sysctl -w ../../etc=1").is_err());
        // Issue #11: only the keys the simulation reads, in their kernel ranges.
        for bad in [
            "sysctl -w net.ipv4.conf.ccd_ecfe_om.rp_filer=1",
            "sysctl -w net.ipv4.bogus_key=1",
            "sysctl -w kernel.panic=1",
            "sysctl -w net.ipv4.ip_forward=2",
            "sysctl -w net.ipv4.conf.all.forwarding=2",
            "sysctl -w net.ipv4.conf.eth0.proxy_arp=-1",
            "sysctl -w net.ipv4.fib_multipath_hash_policy=4",
            "sysctl -w net.ipv4.conf.eth0.accept_local=1",
            "sysctl -w net.ipv4.conf..rp_filter=1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        for good in [
            "sysctl -w net.ipv4.ip_forward=0",
            "sysctl -w net.ipv4.conf.all.rp_filter=2",
            "sysctl -w net.ipv4.conf.eth0.100.forwarding=1",
            "sysctl -w net.ipv4.conf.default.proxy_arp=1",
            "sysctl -w net.ipv4.fib_multipath_hash_policy=1",
        ] {
            assert!(parse(good).is_ok(), "{good}");
        }
        assert_eq!(
            sysctl_interface("net.ipv4.conf.eth0.100.rp_filter"),
            Some("eth0.100")
        );
        assert_eq!(sysctl_interface("net.ipv4.conf.all.rp_filter"), None);
        assert_eq!(sysctl_interface("net.ipv4.ip_forward"), None);
    }
}
