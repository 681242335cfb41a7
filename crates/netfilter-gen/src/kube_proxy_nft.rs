//! kube-proxy's nftables mode: the `nft -f` transaction kube-proxy writes for a set of Service
//! ports, IPv4 (`table ip kube-proxy`), from an explicit description of each Service port
//! ([`NftServicePort`]) rather than from a seed, so a caller can write the nftables-mode
//! ruleset of a given cluster (the seed's, the lab's) and compare it with the iptables mode.
//!
//! The layout follows kube-proxy's `pkg/proxy/nftables/proxier.go` (kubernetes v1.29,
//! `setupNFTables`, `syncProxyRules`, `writeServiceToEndpointRules`):
//!
//! * base chains `filter-prerouting`, `filter-input`, `filter-forward`, `filter-output`
//!   (type filter, priority `dstnat - 10` = -110: filtering sees the pre-DNAT destination),
//!   `nat-prerouting` / `nat-output` (type nat, `dstnat`), `nat-postrouting` (`srcnat`);
//! * `ct state new jump endpoints-check` from filter input/forward/output, `ct state new jump
//!   firewall-check` from filter prerouting/output, `jump services` from nat prerouting/output,
//!   `jump masquerading` from nat postrouting;
//! * `services`: `ip daddr . meta l4proto . th dport vmap @service-ips`, then the NodePort
//!   dispatch (`fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap
//!   @service-nodeports`, or `ip daddr @nodeport-ips ...` with `--nodeport-addresses`);
//! * `endpoints-check`: the `no-endpoint-services` / `no-endpoint-nodeports` verdict maps
//!   (`goto reject-chain` for a Service without endpoints, `drop` for external traffic of an
//!   externalTrafficPolicy=Local Service without local endpoints);
//! * per Service port a `service-HASH-ns/name/proto/port` chain (masquerade mark for sources
//!   outside the cluster CIDR, ClientIP affinity checks, `numgen random mod N vmap { i : goto
//!   endpoint-... }`), `external-...` for NodePort / external / LoadBalancer IPs (mark +
//!   `goto service-...`, or the ETP=Local short-circuits and `goto local-...`), `firewall-...`
//!   for `loadBalancerSourceRanges`; per endpoint `endpoint-HASH-...__IP/PORT` (hairpin mark,
//!   affinity update, `meta l4proto P dnat to IP:PORT`);
//! * `mark-for-masquerade` (`mark set mark or 0x4000`) and `masquerading` (`mark and 0x4000 ==
//!   0 return`, `mark set mark xor 0x4000`, `masquerade fully-random`).
//!
//! Chain names are kube-proxy's `hashAndTruncate`: the first 8 characters of the base32 of
//! SHA-256 over the name, a `-`, the name. Priorities are written as `nft list ruleset`
//! prints them: nft takes the names `dstnat` / `srcnat` only on the hooks they are defined
//! for (`nft -f` refuses `priority dstnat - 10` on input, forward and output, and `dstnat`
//! on output: "invalid priority expression value in this context", nft 1.0, found by the
//! privileged test in crates/kubepath/tests/cli_trace_nft.rs), so those hooks get numbers.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

/// One endpoint of a Service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftEndpoint {
    /// Address.
    pub ip: Ipv4Addr,
    /// Target port.
    pub port: u16,
    /// On the node the rules are written for (externalTrafficPolicy Local uses only these).
    pub local: bool,
}

/// One Service port as kube-proxy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftServicePort {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// The port's name (may be empty).
    pub port_name: String,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// The ClusterIP (`None`: headless, no rules).
    pub cluster_ip: Option<Ipv4Addr>,
    /// The Service port.
    pub port: u16,
    /// The node port, if any.
    pub node_port: Option<u16>,
    /// `spec.externalIPs`.
    pub external_ips: Vec<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip`.
    pub lb_ips: Vec<Ipv4Addr>,
    /// `spec.loadBalancerSourceRanges` (CIDRs as written).
    pub source_ranges: Vec<String>,
    /// externalTrafficPolicy Local.
    pub etp_local: bool,
    /// ClientIP session affinity: the timeout in seconds.
    pub affinity_seconds: Option<u32>,
    /// Ready endpoints.
    pub endpoints: Vec<NftEndpoint>,
}

impl NftServicePort {
    /// `namespace/name:port` as kube-proxy's `ServicePortName.String()` (the port name only
    /// when it is not empty).
    pub fn port_name_string(&self) -> String {
        if self.port_name.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            format!("{}/{}:{}", self.namespace, self.name, self.port_name)
        }
    }

    fn chain_base(&self) -> String {
        hash_and_truncate(&format!(
            "{}/{}/{}/{}",
            self.namespace, self.name, self.protocol, self.port_name
        ))
    }

    fn endpoint_base(&self, ep: &NftEndpoint) -> String {
        hash_and_truncate(&format!(
            "{}/{}/{}/{}__{}/{}",
            self.namespace, self.name, self.protocol, self.port_name, ep.ip, ep.port
        ))
    }

    fn externally_accessible(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty() || !self.lb_ips.is_empty()
    }
}

/// Node-wide settings of kube-proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftProxyConfig {
    /// `--cluster-cidr` (the local-traffic detector): sources outside it are masqueraded
    /// when they reach a ClusterIP. `None`: no detector (no such rule).
    pub cluster_cidr: Option<String>,
    /// `--nodeport-addresses`: the node addresses that accept NodePorts; empty means every
    /// local address (`fib daddr type local`).
    pub nodeport_ips: Vec<Ipv4Addr>,
    /// The masquerade mark (`1 << --masquerade-bit`, 0x4000 by default).
    pub masquerade_mark: u32,
    /// Which release's table layout to write.
    pub layout: NftLayout,
    /// The cluster's Service CIDRs (`--service-cluster-ip-range`): with [`NftLayout::Split`],
    /// traffic to an unallocated address in them is dropped (`cluster-ips-check`). Empty: no
    /// such rule.
    pub service_cidrs: Vec<String>,
}

/// The table layouts of kube-proxy's nftables proxier. Per-Service chains, maps and sets are
/// the same in both; the base chains and the no-endpoint / ClusterIP checks differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NftLayout {
    /// kubernetes v1.29 (the first nftables proxier): four filter base chains at `dstnat -
    /// 10` jumping to one `endpoints-check`; NodePorts on every local address unless
    /// `--nodeport-addresses` is set.
    #[default]
    V1_29,
    /// The layout of kubernetes' `master` as read on 2026-12-07 (`pkg/proxy/nftables`,
    /// `proxier_test.go` `baseRules` / `TestOverallNFTablesRules` at commit 030880a5dc54):
    /// `filter-prerouting-pre-dnat` and `filter-output-pre-dnat` at -110 (firewall check
    /// before DNAT), `filter-input` / `filter-forward` / `filter-output` at 0 (after DNAT)
    /// jumping to `nodeport-endpoints-check` (input only), `service-endpoints-check` and
    /// `cluster-ips-check` (forward and output: `reject` to a ClusterIP port without a
    /// Service, `drop` to an unallocated address of the Service CIDRs); a `cluster-ips` set;
    /// the ClusterIP masquerade rule matches the address only.
    Split,
}

impl Default for NftProxyConfig {
    fn default() -> Self {
        NftProxyConfig {
            cluster_cidr: None,
            nodeport_ips: Vec::new(),
            masquerade_mark: 0x4000,
            layout: NftLayout::V1_29,
            service_cidrs: Vec::new(),
        }
    }
}

/// kube-proxy's `hashAndTruncate`: `HASH8-name`, cut to 240 - 16 characters with `...`.
pub fn hash_and_truncate(name: &str) -> String {
    const MAX: usize = 256 - 16;
    // RFC 4648 base32, as Go's `base32.StdEncoding` (only the first 8 characters are used).
    let h = data_encoding::BASE32_NOPAD.encode(&Sha256::digest(name.as_bytes()));
    let mut s = format!("{}-{name}", &h[..8]);
    if s.len() > MAX {
        s.truncate(MAX - 3);
        s.push_str("...");
    }
    s
}

/// The `nft -f` text kube-proxy (nftables mode, IPv4) writes for `services` on one node.
pub fn render(cfg: &NftProxyConfig, services: &[NftServicePort]) -> String {
    let mut s = match cfg.layout {
        NftLayout::V1_29 => base_v1_29(cfg),
        NftLayout::Split => base_split(cfg),
    };
    for sp in services {
        let Some(cip) = sp.cluster_ip else { continue };
        write_service(&mut s, cfg, sp, cip);
    }
    s
}

fn write_maps(s: &mut String, t: &str) {
    for (name, ty) in [
        (
            "no-endpoint-services",
            "ipv4_addr . inet_proto . inet_service : verdict",
        ),
        (
            "no-endpoint-nodeports",
            "inet_proto . inet_service : verdict",
        ),
        (
            "firewall-ips",
            "ipv4_addr . inet_proto . inet_service : verdict",
        ),
        (
            "service-ips",
            "ipv4_addr . inet_proto . inet_service : verdict",
        ),
        ("service-nodeports", "inet_proto . inet_service : verdict"),
    ] {
        let _ = writeln!(s, "add map {t} {name} {{ type {ty} ; }}");
    }
}

fn write_nodeport_ips(s: &mut String, t: &str, cfg: &NftProxyConfig) {
    if !cfg.nodeport_ips.is_empty() {
        let _ = writeln!(s, "add set {t} nodeport-ips {{ type ipv4_addr ; }}");
        for ip in &cfg.nodeport_ips {
            let _ = writeln!(s, "add element {t} nodeport-ips {{ {ip} }}");
        }
    }
}

/// The rules every layout shares: masquerading and the reject helper ...
fn write_masquerade_rules(s: &mut String, t: &str, cfg: &NftProxyConfig) {
    let mark = format!("{:#x}", cfg.masquerade_mark);
    let _ = writeln!(
        s,
        "add rule {t} mark-for-masquerade mark set mark or {mark}"
    );
    let _ = writeln!(s, "add rule {t} masquerading mark and {mark} == 0 return");
    let _ = writeln!(s, "add rule {t} masquerading mark set mark xor {mark}");
    let _ = writeln!(s, "add rule {t} masquerading masquerade fully-random");
    let _ = writeln!(s, "add rule {t} reject-chain reject");
}

/// ... and the firewall check and the service dispatch.
fn write_dispatch_rules(s: &mut String, t: &str, cfg: &NftProxyConfig) {
    let _ = writeln!(
        s,
        "add rule {t} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips"
    );
    let _ = writeln!(
        s,
        "add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips"
    );
    let nodeport_match = if cfg.nodeport_ips.is_empty() {
        "fib daddr type local ip daddr != 127.0.0.0/8"
    } else {
        "ip daddr @nodeport-ips"
    };
    let _ = writeln!(
        s,
        "add rule {t} services {nodeport_match} meta l4proto . th dport vmap @service-nodeports"
    );
}

fn base_v1_29(cfg: &NftProxyConfig) -> String {
    let mut s = String::new();
    let t = "ip kube-proxy";
    let _ = writeln!(s, "add table {t} {{ comment \"rules for kube-proxy\" ; }}");
    for (name, base) in [
        (
            "filter-prerouting",
            "type filter hook prerouting priority dstnat - 10",
        ),
        ("filter-input", "type filter hook input priority -110"),
        ("filter-forward", "type filter hook forward priority -110"),
        ("filter-output", "type filter hook output priority -110"),
        ("nat-prerouting", "type nat hook prerouting priority dstnat"),
        ("nat-output", "type nat hook output priority -100"),
        (
            "nat-postrouting",
            "type nat hook postrouting priority srcnat",
        ),
    ] {
        let _ = writeln!(s, "add chain {t} {name} {{ {base} ; }}");
    }
    for c in [
        "endpoints-check",
        "firewall-check",
        "services",
        "masquerading",
        "mark-for-masquerade",
        "reject-chain",
    ] {
        let _ = writeln!(s, "add chain {t} {c}");
    }
    write_maps(&mut s, t);
    write_nodeport_ips(&mut s, t, cfg);
    for r in [
        "filter-input ct state new jump endpoints-check",
        "filter-forward ct state new jump endpoints-check",
        "filter-output ct state new jump endpoints-check",
        "filter-prerouting ct state new jump firewall-check",
        "filter-output ct state new jump firewall-check",
        "nat-output jump services",
        "nat-prerouting jump services",
        "nat-postrouting jump masquerading",
    ] {
        let _ = writeln!(s, "add rule {t} {r}");
    }
    write_masquerade_rules(&mut s, t, cfg);
    let nodeport_match = if cfg.nodeport_ips.is_empty() {
        "fib daddr type local ip daddr != 127.0.0.0/8"
    } else {
        "ip daddr @nodeport-ips"
    };
    let _ = writeln!(
        s,
        "add rule {t} endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services"
    );
    let _ = writeln!(
        s,
        "add rule {t} endpoints-check {nodeport_match} meta l4proto . th dport vmap @no-endpoint-nodeports"
    );
    write_dispatch_rules(&mut s, t, cfg);
    s
}

fn base_split(cfg: &NftProxyConfig) -> String {
    let mut s = String::new();
    let t = "ip kube-proxy";
    let _ = writeln!(s, "add table {t} {{ comment \"rules for kube-proxy\" ; }}");
    let _ = writeln!(s, "add set {t} cluster-ips {{ type ipv4_addr ; }}");
    write_nodeport_ips(&mut s, t, cfg);
    write_maps(&mut s, t);
    for (name, base) in [
        (
            "filter-prerouting-pre-dnat",
            "type filter hook prerouting priority -110",
        ),
        (
            "filter-output-pre-dnat",
            "type filter hook output priority -110",
        ),
        ("filter-forward", "type filter hook forward priority 0"),
        ("filter-input", "type filter hook input priority 0"),
        ("filter-output", "type filter hook output priority 0"),
        ("nat-output", "type nat hook output priority -100"),
        ("nat-postrouting", "type nat hook postrouting priority 100"),
        ("nat-prerouting", "type nat hook prerouting priority -100"),
    ] {
        let _ = writeln!(s, "add chain {t} {name} {{ {base} ; }}");
    }
    for c in [
        "cluster-ips-check",
        "firewall-check",
        "mark-for-masquerade",
        "masquerading",
        "nodeport-endpoints-check",
        "reject-chain",
        "services",
        "service-endpoints-check",
    ] {
        let _ = writeln!(s, "add chain {t} {c}");
    }
    let _ = writeln!(
        s,
        "add rule {t} cluster-ips-check ip daddr @cluster-ips reject"
    );
    if !cfg.service_cidrs.is_empty() {
        let _ = writeln!(
            s,
            "add rule {t} cluster-ips-check ip daddr {{ {} }} drop",
            cfg.service_cidrs.join(", ")
        );
    }
    // Rule order within each base chain is kube-proxy's (its `nftablesJumpChains` order).
    for r in [
        "filter-prerouting-pre-dnat ct state new jump firewall-check",
        "filter-forward ct state new jump service-endpoints-check",
        "filter-forward ct state new jump cluster-ips-check",
        "filter-input ct state new jump nodeport-endpoints-check",
        "filter-input ct state new jump service-endpoints-check",
        "filter-output ct state new jump service-endpoints-check",
        "filter-output-pre-dnat ct state new jump firewall-check",
        "filter-output ct state new jump cluster-ips-check",
        "nat-output jump services",
        "nat-postrouting jump masquerading",
        "nat-prerouting jump services",
    ] {
        let _ = writeln!(s, "add rule {t} {r}");
    }
    write_masquerade_rules(&mut s, t, cfg);
    write_dispatch_rules(&mut s, t, cfg);
    let nodeport_match = if cfg.nodeport_ips.is_empty() {
        "ip daddr != 127.0.0.0/8"
    } else {
        "ip daddr @nodeport-ips"
    };
    let _ = writeln!(
        s,
        "add rule {t} nodeport-endpoints-check {nodeport_match} meta l4proto . th dport vmap @no-endpoint-nodeports"
    );
    let _ = writeln!(
        s,
        "add rule {t} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services"
    );
    s
}

fn write_service(s: &mut String, cfg: &NftProxyConfig, sp: &NftServicePort, cip: Ipv4Addr) {
    let t = "ip kube-proxy";
    let proto = sp.protocol.as_str();
    let port = sp.port;
    let comment = sp.port_name_string();
    let base = sp.chain_base();
    let cluster_chain = format!("service-{base}");
    let local_chain = format!("local-{base}");
    let ext_chain = format!("external-{base}");
    let fw_chain = format!("firewall-{base}");
    let ep_chain = |e: &NftEndpoint| format!("endpoint-{}", sp.endpoint_base(e));
    let aff_set = |e: &NftEndpoint| format!("affinity-{}", sp.endpoint_base(e));
    let has_endpoints = !sp.endpoints.is_empty();
    let local: Vec<&NftEndpoint> = sp.endpoints.iter().filter(|e| e.local).collect();
    let all: Vec<&NftEndpoint> = sp.endpoints.iter().collect();
    // proxy.CategorizeEndpoints: with ETP Local the node reaches its local endpoints (and all
    // of them for internal traffic, which is Cluster here).
    let uses_cluster = has_endpoints;
    let uses_local = sp.etp_local && !local.is_empty();
    let has_external = if sp.etp_local {
        !local.is_empty()
    } else {
        has_endpoints
    };
    let uses_ext = has_endpoints && sp.externally_accessible();
    let ext_filter = if !has_endpoints {
        "goto reject-chain"
    } else {
        "drop"
    };
    let _ = writeln!(s, "\n# {comment}");
    for e in &all {
        let _ = writeln!(s, "add chain {t} {}", ep_chain(e));
    }
    if uses_cluster {
        let _ = writeln!(s, "add chain {t} {cluster_chain}");
    }
    if uses_local {
        let _ = writeln!(s, "add chain {t} {local_chain}");
    }
    if uses_ext {
        let _ = writeln!(s, "add chain {t} {ext_chain}");
    }
    // The ClusterIP.
    if cfg.layout == NftLayout::Split {
        let _ = writeln!(s, "add element {t} cluster-ips {{ {cip} }}");
    }
    if has_endpoints {
        let _ = writeln!(
            s,
            "add element {t} service-ips {{ {cip} . {proto} . {port} : goto {cluster_chain} }}"
        );
    } else {
        let _ = writeln!(
            s,
            "add element {t} no-endpoint-services {{ {cip} . {proto} . {port} comment \"{comment}\" : goto reject-chain }}"
        );
    }
    for ip in sp.external_ips.iter().chain(&sp.lb_ips) {
        if has_endpoints {
            let _ = writeln!(
                s,
                "add element {t} service-ips {{ {ip} . {proto} . {port} : goto {ext_chain} }}"
            );
        }
        if !has_external {
            let _ = writeln!(
                s,
                "add element {t} no-endpoint-services {{ {ip} . {proto} . {port} comment \"{comment}\" : {ext_filter} }}"
            );
        }
    }
    if !sp.lb_ips.is_empty() && !sp.source_ranges.is_empty() {
        let _ = writeln!(s, "add chain {t} {fw_chain}");
        let _ = writeln!(
            s,
            "add rule {t} {fw_chain} ip saddr != {{ {} }} drop",
            sp.source_ranges.join(", ")
        );
        for ip in &sp.lb_ips {
            let elem_comment = match cfg.layout {
                NftLayout::V1_29 => format!(" comment \"{comment}\""),
                NftLayout::Split => String::new(),
            };
            let _ = writeln!(
                s,
                "add element {t} firewall-ips {{ {ip} . {proto} . {port}{elem_comment} : goto {fw_chain} }}"
            );
        }
    }
    if let Some(np) = sp.node_port {
        if has_endpoints {
            let _ = writeln!(
                s,
                "add element {t} service-nodeports {{ {proto} . {np} : goto {ext_chain} }}"
            );
        }
        if !has_external {
            let _ = writeln!(
                s,
                "add element {t} no-endpoint-nodeports {{ {proto} . {np} comment \"{comment}\" : {ext_filter} }}"
            );
        }
    }
    if has_endpoints {
        if let Some(cidr) = &cfg.cluster_cidr {
            let dport = match cfg.layout {
                NftLayout::V1_29 => format!(" {proto} dport {port}"),
                NftLayout::Split => String::new(),
            };
            let _ = writeln!(
                s,
                "add rule {t} {cluster_chain} ip daddr {cip}{dport} ip saddr != {cidr} jump mark-for-masquerade"
            );
        }
    }
    if uses_ext {
        if !sp.etp_local {
            let _ = writeln!(s, "add rule {t} {ext_chain} jump mark-for-masquerade");
        } else {
            if let Some(cidr) = &cfg.cluster_cidr {
                let _ = writeln!(
                    s,
                    "add rule {t} {ext_chain} ip saddr {cidr} goto {cluster_chain} comment \"short-circuit pod traffic\""
                );
            }
            let _ = writeln!(
                s,
                "add rule {t} {ext_chain} fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\""
            );
            let _ = writeln!(
                s,
                "add rule {t} {ext_chain} fib saddr type local goto {cluster_chain} comment \"short-circuit local traffic\""
            );
        }
        if has_external {
            let policy = if sp.etp_local {
                &local_chain
            } else {
                &cluster_chain
            };
            let _ = writeln!(s, "add rule {t} {ext_chain} goto {policy}");
        }
    }
    if let Some(secs) = sp.affinity_seconds {
        for e in &all {
            let _ = writeln!(
                s,
                "add set {t} {} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {secs}s ; }}",
                aff_set(e)
            );
        }
    }
    let lb_rules = |s: &mut String, chain: &str, eps: &[&NftEndpoint]| {
        if sp.affinity_seconds.is_some() {
            for e in eps {
                let _ = writeln!(
                    s,
                    "add rule {t} {chain} ip saddr @{} goto {}",
                    aff_set(e),
                    ep_chain(e)
                );
            }
        }
        let elems: Vec<String> = eps
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{i} : goto {}", ep_chain(e)))
            .collect();
        let _ = writeln!(
            s,
            "add rule {t} {chain} numgen random mod {} vmap {{ {} }}",
            eps.len(),
            elems.join(" , ")
        );
    };
    if uses_cluster {
        lb_rules(s, &cluster_chain, &all);
    }
    if uses_local {
        lb_rules(s, &local_chain, &local);
    }
    for e in &all {
        let c = ep_chain(e);
        let _ = writeln!(
            s,
            "add rule {t} {c} ip saddr {} jump mark-for-masquerade",
            e.ip
        );
        if sp.affinity_seconds.is_some() {
            let _ = writeln!(s, "add rule {t} {c} update @{} {{ ip saddr }}", aff_set(e));
        }
        let _ = writeln!(
            s,
            "add rule {t} {c} meta l4proto {proto} dnat to {}:{}",
            e.ip, e.port
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_are_kube_proxys() {
        // kube-proxy's own test (proxier_test.go) names `ns1/svc1/tcp/p80` this way.
        assert_eq!(
            hash_and_truncate("ns1/svc1/tcp/p80"),
            "ULMVA6XW-ns1/svc1/tcp/p80"
        );
        assert_eq!(
            hash_and_truncate("ns1/svc1/tcp/p80__10.180.0.1/80"),
            "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
        );
    }
}
