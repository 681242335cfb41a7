//! The namespace lab: client, node and backend namespaces wired with veth pairs after a
//! [`LabPlan`], torn down by `Drop` (also on panic).
//!
//! Only setup commands run through `ip netns exec`; traffic is sent from threads that
//! `setns(CLONE_NEWNET)` into a namespace (see [`enter_netns`]). No route or address is ever
//! added to the host's namespace: every `ip` command names its namespace with `-n`.

use kubepath_netfilter_gen::LabPlan;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

/// Move the calling thread into the named network namespace. Sockets created afterwards by
/// this thread live in that namespace. Call only from threads the test spawned for this.
pub fn enter_netns(name: &str) -> io::Result<()> {
    let f = File::open(format!("/var/run/netns/{name}"))?;
    // SAFETY: setns on a valid namespace fd only changes this thread's network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Run a command to completion (stdin from `input`), returning stdout or an error naming the
/// command and its stderr. The child is waited for, so no process outlives the call.
pub fn run(args: &[&str], input: Option<&str>) -> Result<String, String> {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..])
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{}: cannot start: {e}", args.join(" ")))?;
    if let Some(text) = input {
        if let Some(mut stdin) = child.stdin.take() {
            // A failed write shows up as the command's own error below.
            let _ = stdin.write_all(text.as_bytes());
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

const HARNESS_NFT: &str = "table ip ka_harness {
  set first { typeof ct id . meta mark . meta mark ; flags dynamic ; size 65535 ; }
  chain pre { type filter hook prerouting priority -150; policy accept; ct state new counter; }
  chain post { type filter hook postrouting priority 500; policy accept;
    meta l4proto { tcp, udp, icmp } ct direction original ct state new update @first { ct id . ct mark . meta mark }; }
  chain inp { type filter hook input priority 500; policy accept;
    meta l4proto { tcp, udp, icmp } ct direction original ct state new update @first { ct id . ct mark . meta mark }; }
}
";

/// First-packet marks: conntrack id -> (ct mark, packet mark).
pub type Marks = std::collections::HashMap<u32, (u32, u32)>;

/// A set of namespaces built from a plan. Dropping it deletes every namespace it created.
pub struct Lab {
    /// Client namespace (probes come from here).
    pub client: String,
    /// The node under test (rulesets are loaded here).
    pub node: String,
    /// Backend namespaces, one per backend link, in plan order.
    pub backends: Vec<String>,
    /// The plan the lab was built from.
    pub plan: LabPlan,
    created: Vec<String>,
}

impl Lab {
    /// Build the lab. Namespace names start with `prefix` (make it unique: test pid + tag).
    pub fn build(plan: &LabPlan, prefix: &str) -> Result<Lab, String> {
        let mut lab = Lab {
            client: format!("{prefix}-client"),
            node: format!("{prefix}-node"),
            backends: (1..=plan.backend_links.len())
                .map(|i| format!("{prefix}-backend{i}"))
                .collect(),
            plan: plan.clone(),
            created: Vec::new(),
        };
        // On error, `lab` is dropped here and removes what was created so far.
        lab.setup()?;
        Ok(lab)
    }

    fn add_ns(&mut self, ns: &str) -> Result<(), String> {
        run(&["ip", "netns", "add", ns], None)?;
        self.created.push(ns.to_string());
        run(&["ip", "-n", ns, "link", "set", "lo", "up"], None)?;
        // New namespaces: rp_filter must be off (asymmetric probes, NATed replies). ICMP
        // error rate limits off in every namespace (they are per namespace): the node's
        // REJECTs, the backends' port-unreachables (a forwarded UDP probe to a port no
        // responder has) and the client's own errors must all be sent for each of thousands
        // of probes, or a rate-limited error would look like a DROP. Checked below.
        let sysctls = [
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            ("net.ipv4.icmp_ratelimit", "0"),
            ("net.ipv4.icmp_msgs_per_sec", "1000000"),
            ("net.ipv4.icmp_msgs_burst", "1000000"),
        ];
        let mut args = vec!["ip", "netns", "exec", ns, "sysctl", "-qw"];
        let kv: Vec<String> = sysctls.iter().map(|(k, v)| format!("{k}={v}")).collect();
        args.extend(kv.iter().map(String::as_str));
        run(&args, None)?;
        for (k, v) in sysctls {
            let got = run(&["ip", "netns", "exec", ns, "sysctl", "-n", k], None)?;
            if got.trim() != v {
                return Err(format!(
                    "{ns}: {k} is {} after setting it to {v}",
                    got.trim()
                ));
            }
        }
        Ok(())
    }

    fn setup(&mut self) -> Result<(), String> {
        let plan = self.plan.clone();
        let (client, node) = (self.client.clone(), self.node.clone());
        for ns in [client.clone(), node.clone()]
            .into_iter()
            .chain(self.backends.clone())
        {
            self.add_ns(&ns)?;
        }
        // ICMP echo probes use unprivileged ping sockets, allowed per namespace by group (the
        // client sends them, and the node for locally generated probes).
        for ns in [&client, &node] {
            run(
                &[
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    "net.ipv4.ping_group_range=0 2147483647",
                ],
                None,
            )?;
        }
        run(
            &[
                "ip",
                "netns",
                "exec",
                &node,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
            None,
        )?;
        // Client links (policy routing by source address inside the client namespace).
        for (i, l) in plan.client_links.iter().enumerate() {
            self.veth(&node, l.node_iface, &client, l.peer_iface)?;
            run(
                &[
                    "ip",
                    "-n",
                    &node,
                    "addr",
                    "add",
                    &format!("{}/24", l.node_addr),
                    "dev",
                    l.node_iface,
                ],
                None,
            )?;
            for a in &l.peer_addrs {
                run(
                    &[
                        "ip",
                        "-n",
                        &client,
                        "addr",
                        "add",
                        &format!("{a}/24"),
                        "dev",
                        l.peer_iface,
                    ],
                    None,
                )?;
            }
            let gw = l.node_addr.to_string();
            // Every client link has its own table chosen by source address, so a probe always
            // leaves by the link of its source address, even towards another client link's
            // subnet (which the main table would reach directly): the node sees it arrive on
            // that link's interface, as `Probe::in_iface` says.
            let table = (100 + i).to_string();
            let net = format!("{}/24", l.network());
            run(
                &[
                    "ip", "-n", &client, "rule", "add", "from", &net, "table", &table,
                ],
                None,
            )?;
            run(
                &[
                    "ip",
                    "-n",
                    &client,
                    "route",
                    "add",
                    &net,
                    "dev",
                    l.peer_iface,
                    "table",
                    &table,
                ],
                None,
            )?;
            run(
                &[
                    "ip",
                    "-n",
                    &client,
                    "route",
                    "add",
                    "default",
                    "via",
                    &gw,
                    "dev",
                    l.peer_iface,
                    "table",
                    &table,
                ],
                None,
            )?;
        }
        // Backend links; the last one carries the node's default route and accepts the
        // service range as AnyIP.
        let nb = plan.backend_links.len();
        for (i, l) in plan.backend_links.iter().enumerate() {
            let b = self.backends[i].clone();
            self.veth(&node, l.node_iface, &b, l.peer_iface)?;
            run(
                &[
                    "ip",
                    "-n",
                    &node,
                    "addr",
                    "add",
                    &format!("{}/24", l.node_addr),
                    "dev",
                    l.node_iface,
                ],
                None,
            )?;
            for a in &l.peer_addrs {
                run(
                    &[
                        "ip",
                        "-n",
                        &b,
                        "addr",
                        "add",
                        &format!("{a}/24"),
                        "dev",
                        l.peer_iface,
                    ],
                    None,
                )?;
            }
            run(
                &[
                    "ip",
                    "-n",
                    &b,
                    "route",
                    "add",
                    "default",
                    "via",
                    &l.node_addr.to_string(),
                ],
                None,
            )?;
            if i + 1 == nb {
                let gw = l.peer_addrs[0].to_string();
                run(
                    &["ip", "-n", &node, "route", "add", "default", "via", &gw],
                    None,
                )?;
                let (net, len) = plan.service_net;
                run(
                    &[
                        "ip",
                        "-n",
                        &b,
                        "route",
                        "add",
                        "local",
                        &format!("{net}/{len}"),
                        "dev",
                        "lo",
                    ],
                    None,
                )?;
            }
        }
        for a in &plan.node_lo_addrs {
            run(
                &[
                    "ip",
                    "-n",
                    &node,
                    "addr",
                    "add",
                    &format!("{a}/32"),
                    "dev",
                    "lo",
                ],
                None,
            )?;
        }
        // The harness table (not an iptables table, so loading rulesets never touches it):
        // * `pre`: a `ct` expression makes conntrack track every packet in the node even when
        //   a ruleset has no nat table and no conntrack match (the kernel enables conntrack
        //   per namespace on demand). A base chain without verdict ends in policy accept,
        //   which does not stop the other chains on the hook.
        // * `post` / `inp`: after every iptables chain (priority 500 > nat's 100), record the
        //   first packet's transport source port (after SNAT), connection mark and packet mark
        //   in the set `first`, so marks are read as they were when the first packet left,
        //   before replies could change them.
        run(
            &["ip", "netns", "exec", &node, "nft", "-f", "-"],
            Some(HARNESS_NFT),
        )?;
        Ok(())
    }

    fn veth(&self, a_ns: &str, a: &str, b_ns: &str, b: &str) -> Result<(), String> {
        // Created directly in the namespaces, so the host never sees these interfaces.
        run(
            &[
                "ip", "-n", a_ns, "link", "add", a, "type", "veth", "peer", "name", b, "netns",
                b_ns,
            ],
            None,
        )?;
        for (ns, i) in [(a_ns, a), (b_ns, b)] {
            run(
                &[
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.conf.{i}.rp_filter=0"),
                ],
                None,
            )?;
            run(&["ip", "-n", ns, "link", "set", i, "up"], None)?;
        }
        Ok(())
    }

    /// Replace the node's iptables rules by `text` (iptables-save format): delete the five
    /// iptables tables and every ipset, restore `ipset` (`ipset save` format) if given, then
    /// `iptables-restore`.
    pub fn load(&self, text: &str, ipset: Option<&str>) -> Result<(), String> {
        let mut flush = String::new();
        for t in ["raw", "mangle", "nat", "filter", "security"] {
            // `table` creates it when absent, so the delete never fails.
            flush.push_str(&format!("table ip {t}\ndelete table ip {t}\n"));
        }
        run(
            &["ip", "netns", "exec", &self.node, "nft", "-f", "-"],
            Some(&flush),
        )?;
        // No rule refers to a set any more: remove them all (none is fine too).
        run(
            &["ip", "netns", "exec", &self.node, "ipset", "destroy"],
            None,
        )?;
        if let Some(sets) = ipset {
            run(
                &["ip", "netns", "exec", &self.node, "ipset", "restore"],
                Some(sets),
            )?;
        }
        run(
            &["ip", "netns", "exec", &self.node, "iptables-restore"],
            Some(&kernel_text(text)),
        )?;
        self.check_translation()
    }

    /// With the nf_tables backend, refuse a loaded ruleset in which iptables-nft combined a
    /// tcp/udp match's negated source and destination port into one 32-bit `cmp neq` (see
    /// [`kernel_text`]): the kernel would not run the rule the text says, and the engine
    /// would be blamed for the difference. A harness error, never a disagreement.
    fn check_translation(&self) -> Result<(), String> {
        let version = run(&["iptables-restore", "--version"], None)?;
        if !version.contains("nf_tables") {
            return Ok(());
        }
        let dump = run(
            &[
                "ip",
                "netns",
                "exec",
                &self.node,
                "nft",
                "--debug=netlink",
                "list",
                "ruleset",
            ],
            None,
        )?;
        match combined_negated_ports(&dump) {
            Some(at) => Err(format!(
                "iptables-nft loaded a combined negated port compare (the kernel does not run the rule as written): {at}"
            )),
            None => Ok(()),
        }
    }

    /// Forget every connection the node tracks.
    pub fn flush_conntrack(&self) -> Result<(), String> {
        run(
            &["ip", "netns", "exec", &self.node, "conntrack", "-F"],
            None,
        )
        .map(|_| ())
    }

    /// Empty the harness's record of first-packet marks.
    pub fn flush_marks(&self) -> Result<(), String> {
        run(
            &[
                "ip",
                "netns",
                "exec",
                &self.node,
                "nft",
                "flush",
                "set",
                "ip",
                "ka_harness",
                "first",
            ],
            None,
        )
        .map(|_| ())
    }

    /// First-packet marks recorded by the harness, by conntrack id (`ct id`, which
    /// `conntrack -L -o id` prints): (ct mark, packet mark).
    pub fn marks(&self) -> Result<Marks, String> {
        let text = run(
            &[
                "ip",
                "netns",
                "exec",
                &self.node,
                "nft",
                "list",
                "set",
                "ip",
                "ka_harness",
                "first",
            ],
            None,
        )?;
        let mut out = Marks::new();
        let Some(start) = text.find("elements = {") else {
            return Ok(out);
        };
        let body = &text[start + "elements = {".len()..];
        let body = &body[..body.find('}').unwrap_or(body.len())];
        let num = |s: &str| -> Option<u32> {
            match s.strip_prefix("0x") {
                Some(h) => u32::from_str_radix(h, 16).ok(),
                None => s.parse().ok(),
            }
        };
        for elem in body.split(',') {
            let parts: Vec<&str> = elem.split('.').map(str::trim).collect();
            if let [id, ct, m] = parts[..] {
                if let (Some(id), Some(ct), Some(m)) = (num(id), num(ct), num(m)) {
                    out.insert(id, (ct, m));
                }
            }
        }
        Ok(out)
    }

    /// The node's conntrack table (`conntrack -L -o id`).
    pub fn conntrack_list(&self) -> Result<String, String> {
        run(
            &[
                "ip",
                "netns",
                "exec",
                &self.node,
                "conntrack",
                "-L",
                "-o",
                "id",
            ],
            None,
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            if let Err(e) = run(&["ip", "netns", "del", ns], None) {
                eprintln!("warning: cleanup: {e}");
            }
        }
    }
}

/// The ruleset text as given to `iptables-restore` in the lab: the same rules, with one
/// rewrite that keeps their x_tables meaning under the nf_tables backend.
///
/// iptables-nft (1.8.9, measured) translates a tcp/udp match with a single source port and a
/// single destination port, both negated (`-m udp ! --sport A ! --dport B`), into one 4-byte
/// payload load at transport offset 0 and one `cmp neq` against `A . B`: that matches when
/// either port differs, while xt_tcpudp (and the engine) require both to differ. (`nft list`
/// even prints it as two comparisons; `nft --debug=netlink` shows the single `cmp neq`.)
/// Seed 777001 hit it: `-A FORWARD -p udp -m udp ! --dport 30080 ! --sport 23970 -j REJECT`
/// rejected datagrams to port 30080. Moving `! --dport B` into a second `-m tcp|udp` instance
/// makes iptables-nft emit two 2-byte compares, i.e. the rule as written.
pub fn kernel_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        if line.starts_with("-A ") {
            out.push_str(&split_negated_ports(line));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Whitespace-separated words, a double-quoted string being one word (quotes kept).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if c.is_whitespace() && !quoted {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn split_negated_ports(line: &str) -> String {
    let mut w = words(line);
    let is_end = |t: &str| matches!(t, "-m" | "--match" | "-j" | "--jump" | "-g" | "--goto");
    let single = |t: &str| !t.contains(':') && t.parse::<u16>().is_ok();
    let mut i = 0;
    while i + 1 < w.len() {
        if !(w[i] == "-m" && (w[i + 1] == "tcp" || w[i + 1] == "udp")) {
            i += 1;
            continue;
        }
        let proto = w[i + 1].clone();
        let start = i + 2;
        let end = (start..w.len()).find(|&k| is_end(&w[k])).unwrap_or(w.len());
        let find = |opt: &str| {
            (start..end.saturating_sub(2))
                .find(|&k| w[k] == "!" && w[k + 1] == opt && single(&w[k + 2]))
        };
        if let (Some(_), Some(d)) = (find("--sport"), find("--dport")) {
            let dport: Vec<String> = w.drain(d..d + 3).collect();
            let at = end - 3;
            let mut add = vec!["-m".to_string(), proto];
            add.extend(dport);
            w.splice(at..at, add);
        }
        i = end;
    }
    w.join(" ")
}

/// The first rule in `nft --debug=netlink` output that loads 4 bytes at transport offset 0
/// (source and destination port together) and compares them with `neq`.
fn combined_negated_ports(dump: &str) -> Option<String> {
    let lines: Vec<&str> = dump.lines().collect();
    let mut rule = "";
    for (k, l) in lines.iter().enumerate() {
        if !l.starts_with(' ') && !l.trim().is_empty() {
            rule = l;
        }
        if l.contains("payload load 4b @ transport header + 0 ")
            && lines.get(k + 1).is_some_and(|n| n.contains("cmp neq"))
        {
            return Some(rule.trim().to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negated_port_pairs_are_split_into_two_match_instances() {
        assert_eq!(
            kernel_text("-A FORWARD -p udp -m udp ! --dport 30080 ! --sport 23970 -j REJECT --reject-with icmp-port-unreachable\n"),
            "-A FORWARD -p udp -m udp ! --sport 23970 -m udp ! --dport 30080 -j REJECT --reject-with icmp-port-unreachable\n"
        );
        // Quoted comments survive; ranges, one negation or none are left alone.
        let keep = "*filter\n-A X -m comment --comment \"a b\" -p tcp -m tcp ! --sport 1:5 ! --dport 2 -j DROP\n-A X -p tcp -m tcp --sport 1 ! --dport 2\n-A X -p tcp -m tcp --sport 1 --dport 2\nCOMMIT\n";
        assert_eq!(kernel_text(keep), keep);
        assert_eq!(
            kernel_text(
                "-A X -m comment --comment \"a  b\" -p tcp -m tcp ! --sport 1 ! --dport 2\n"
            ),
            "-A X -m comment --comment \"a  b\" -p tcp -m tcp ! --sport 1 -m tcp ! --dport 2\n"
        );
    }

    #[test]
    fn a_combined_negated_compare_is_recognised() {
        let dump = "ip filter FORWARD 2\n  [ meta load l4proto => reg 1 ]\n  [ payload load 4b @ transport header + 0 => reg 1 ]\n  [ cmp neq reg 1 0x8075a25d ]\n";
        assert_eq!(
            combined_negated_ports(dump).as_deref(),
            Some("ip filter FORWARD 2")
        );
        let ok = "ip filter FORWARD 2\n  [ payload load 2b @ transport header + 0 => reg 1 ]\n  [ cmp neq reg 1 0x0000a25d ]\n  [ payload load 4b @ transport header + 0 => reg 1 ]\n  [ cmp eq reg 1 0x8075a25d ]\n";
        assert_eq!(combined_negated_ports(ok), None);
    }
}
