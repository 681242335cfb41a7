//! Writes a synthetic but realistic snapshot of a large cluster: N nodes behind one router
//! that ECMPs a LoadBalancer IP over all of them, I ingress-nginx controller pods and a
//! backend Service with B endpoints. Used by the scale test and the trace benchmark.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

pub struct Scale {
    pub nodes: usize,
    pub ingress: usize,
    pub backends: usize,
}

pub const VIP: &str = "10.99.0.1";
pub const HOST: &str = "web.example.com";

fn node_ip(i: usize) -> String {
    format!("10.1.{}.{}", i / 250, i % 250 + 1)
}
fn ingress_ip(j: usize) -> String {
    format!("192.168.{}.{}", 100 + j / 250, j % 250 + 1)
}
fn backend_ip(k: usize) -> String {
    format!("192.168.{}.{}", 200 + k / 250, k % 250 + 1)
}

/// kube-proxy's probability ladder: rule i of n matches with 1/(n-i), printed with 11 decimals.
fn ladder(n: usize, i: usize) -> Option<String> {
    (i + 1 < n).then(|| format!("{:.11}", 1.0 / (n - i) as f64))
}

pub fn write(dir: &Path, s: &Scale) -> std::io::Result<()> {
    fs::create_dir_all(dir.join("cluster"))?;
    fs::create_dir_all(dir.join("dns"))?;
    fs::create_dir_all(dir.join("routers/R1"))?;
    fs::write(
        dir.join("kubepath.yaml"),
        "apiVersion: kubepath.dev/v1\nkind: Manifest\nclients:\n  - name: users\n    prefixes: [10.200.0.0/16]\n    entry:\n      - router: R1\n        vrf: default\n",
    )?;
    fs::write(
        dir.join("dns/example.com.zone"),
        format!("$ORIGIN example.com.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 300\n@ IN NS ns1\nns1 IN A 10.0.0.53\nweb IN A {VIP}\n"),
    )?;
    // Router: one interface on the nodes' subnet, the VIP over every node.
    fs::write(
        dir.join("routers/R1/show-run-int.txt"),
        "R1# show running-config interface ve 10\ninterface Ve 10\n ip address 10.1.255.254/16\n no shutdown\n!\ninterface Ve 90\n ip address 10.90.0.2/30\n no shutdown\n!\n",
    )?;
    let mut bgp = String::from(
        "R1# show ip bgp\nTotal number of BGP Routes: 0\nStatus codes: s suppressed, d damped, h history, * valid, > best, i internal, S stale, x best-external\nOrigin codes: i - IGP, e - EGP, ? - incomplete\n\n     Network            Next Hop        RD              MED        LocPrf     Weight Path\n",
    );
    // The way back to the clients: a default route to the upstream on a connected /30 (the
    // entry router's table must hold a route back; without one the reply's fate is unknown).
    bgp.push_str("*>   0.0.0.0/0          10.90.0.1                       none       100        0      65000 i\n*>   10.90.0.0/30       0.0.0.0                         0          100        32768  ?\n");
    for i in 0..s.nodes {
        let flag = if i == 0 { "*>" } else { "* " };
        let _ = writeln!(
            bgp,
            "{flag}   {:<18} {:<15} {:<15} {:<10} {:<10} {:<6} 64512 i",
            format!("{VIP}/32"),
            node_ip(i),
            "",
            "none",
            "100",
            "0"
        );
    }
    fs::write(dir.join("routers/R1/show-ip-bgp.txt"), bgp)?;

    // The node ruleset: the same kube-proxy rules on every node.
    let mut nat = String::from("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-MARK-DROP - [0:0]\n:KUBE-FW-INGRESSHTTP0000 - [0:0]\n:KUBE-SVC-INGRESSHTTP0000 - [0:0]\n");
    for j in 0..s.ingress {
        let _ = writeln!(nat, ":KUBE-SEP-ING{j:013} - [0:0]");
    }
    nat.push_str("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -m mark --mark 0x4000/0x4000 -j MASQUERADE\n-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n-A KUBE-MARK-DROP -j MARK --set-xmark 0x8000/0x8000\n");
    let _ = writeln!(nat, "-A KUBE-SERVICES -d {VIP}/32 -p tcp -m comment --comment \"ingress/ingress-nginx:http loadbalancer IP\" -m tcp --dport 80 -j KUBE-FW-INGRESSHTTP0000");
    nat.push_str("-A KUBE-FW-INGRESSHTTP0000 -m comment --comment \"ingress/ingress-nginx:http loadbalancer IP\" -j KUBE-MARK-MASQ\n-A KUBE-FW-INGRESSHTTP0000 -m comment --comment \"ingress/ingress-nginx:http loadbalancer IP\" -j KUBE-SVC-INGRESSHTTP0000\n-A KUBE-FW-INGRESSHTTP0000 -m comment --comment \"ingress/ingress-nginx:http loadbalancer IP\" -j KUBE-MARK-DROP\n");
    for j in 0..s.ingress {
        match ladder(s.ingress, j) {
            Some(p) => {
                let _ = writeln!(nat, "-A KUBE-SVC-INGRESSHTTP0000 -m comment --comment \"ingress/ingress-nginx:http\" -m statistic --mode random --probability {p} -j KUBE-SEP-ING{j:013}");
            }
            None => {
                let _ = writeln!(nat, "-A KUBE-SVC-INGRESSHTTP0000 -m comment --comment \"ingress/ingress-nginx:http\" -j KUBE-SEP-ING{j:013}");
            }
        }
    }
    for j in 0..s.ingress {
        let ip = ingress_ip(j);
        let _ = writeln!(nat, "-A KUBE-SEP-ING{j:013} -s {ip}/32 -m comment --comment \"ingress/ingress-nginx:http\" -j KUBE-MARK-MASQ");
        let _ = writeln!(nat, "-A KUBE-SEP-ING{j:013} -p tcp -m comment --comment \"ingress/ingress-nginx:http\" -m tcp -j DNAT --to-destination {ip}:80");
    }
    nat.push_str("COMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n");

    let mut nodes_yaml = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for i in 0..s.nodes {
        let name = format!("node-{i:03}");
        let ip = node_ip(i);
        let nd = dir.join("nodes").join(&name);
        fs::create_dir_all(&nd)?;
        fs::write(nd.join("iptables-save.txt"), &nat)?;
        fs::write(
            nd.join("ip-addr.txt"),
            format!("1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000\n    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n    inet 127.0.0.1/8 scope host lo\n       valid_lft forever preferred_lft forever\n2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP group default qlen 1000\n    link/ether 52:54:00:00:{:02x}:{:02x} brd ff:ff:ff:ff:ff:ff\n    inet {ip}/16 brd 10.1.255.255 scope global eth0\n       valid_lft forever preferred_lft forever\n3: tunl0@NONE: <NOARP,UP,LOWER_UP> mtu 1480 qdisc noqueue state UNKNOWN group default qlen 1000\n    link/ipip 0.0.0.0 brd 0.0.0.0\n", i / 256, i % 256),
        )?;
        let mut routes = format!("default via 10.1.255.254 dev eth0 proto static metric 100\n10.1.0.0/16 dev eth0 proto kernel scope link src {ip}\n192.168.0.0/16 dev tunl0 proto bird scope link\n");
        for j in (0..s.ingress).filter(|j| j % s.nodes == i) {
            let _ = writeln!(routes, "{} dev cali{j:011x} scope link", ingress_ip(j));
        }
        for k in (0..s.backends).filter(|k| (k * 7) % s.nodes == i) {
            let _ = writeln!(routes, "{} dev calb{k:011x} scope link", backend_ip(k));
        }
        fs::write(nd.join("ip-route.txt"), routes)?;
        fs::write(
            nd.join("ip-rule.txt"),
            "0:\tfrom all lookup local\n32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n",
        )?;
        fs::write(
            nd.join("sysctl.txt"),
            "net.ipv4.ip_forward = 1\nnet.ipv4.conf.all.rp_filter = 0\nnet.ipv4.conf.eth0.rp_filter = 0\n",
        )?;
        let _ = write!(
            nodes_yaml,
            "- apiVersion: v1\n  kind: Node\n  metadata:\n    name: {name}\n    labels:\n      kubernetes.io/hostname: {name}\n  status:\n    addresses:\n    - type: InternalIP\n      address: {ip}\n    - type: Hostname\n      address: {name}\n    conditions:\n    - type: Ready\n      status: \"True\"\n"
        );
    }
    fs::write(dir.join("cluster/nodes.yaml"), nodes_yaml)?;

    let mut pods = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for j in 0..s.ingress {
        let _ = write!(
            pods,
            "- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: ingress-nginx-controller-{j:04}\n    namespace: ingress\n    labels:\n      app.kubernetes.io/name: ingress-nginx\n      app.kubernetes.io/component: controller\n  spec:\n    nodeName: node-{:03}\n    containers:\n    - name: controller\n      image: registry.k8s.io/ingress-nginx/controller:v1.9.4\n      args: [/nginx-ingress-controller, --controller-class=k8s.io/ingress-nginx, --ingress-class=nginx]\n      ports:\n      - {{name: http, containerPort: 80, protocol: TCP}}\n  status:\n    phase: Running\n    hostIP: {}\n    podIP: {}\n    podIPs:\n    - ip: {}\n    conditions:\n    - type: Ready\n      status: \"True\"\n",
            j % s.nodes,
            node_ip(j % s.nodes),
            ingress_ip(j),
            ingress_ip(j)
        );
    }
    let mut eps = String::from("apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: web\n  namespace: shop\nsubsets:\n- addresses:\n");
    for k in 0..s.backends {
        let n = (k * 7) % s.nodes;
        let _ = write!(
            pods,
            "- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: web-{k:04}\n    namespace: shop\n    labels:\n      app: web\n  spec:\n    nodeName: node-{n:03}\n    containers:\n    - name: web\n      image: nginx:1.25\n      ports:\n      - {{name: http, containerPort: 8080, protocol: TCP}}\n  status:\n    phase: Running\n    hostIP: {}\n    podIP: {}\n    podIPs:\n    - ip: {}\n    conditions:\n    - type: Ready\n      status: \"True\"\n",
            node_ip(n),
            backend_ip(k),
            backend_ip(k)
        );
        let _ = write!(
            eps,
            "  - ip: {}\n    nodeName: node-{n:03}\n    targetRef:\n      kind: Pod\n      namespace: shop\n      name: web-{k:04}\n",
            backend_ip(k)
        );
    }
    eps.push_str("  ports:\n  - name: http\n    port: 8080\n    protocol: TCP\n");
    fs::write(dir.join("cluster/pods.yaml"), pods)?;
    fs::write(dir.join("cluster/endpoints.yaml"), eps)?;
    fs::write(
        dir.join("cluster/services.yaml"),
        format!("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: ingress-nginx\n    namespace: ingress\n  spec:\n    type: LoadBalancer\n    clusterIP: 10.96.0.80\n    externalTrafficPolicy: Cluster\n    selector:\n      app.kubernetes.io/name: ingress-nginx\n    ports:\n    - name: http\n      port: 80\n      targetPort: 80\n      nodePort: 30080\n      protocol: TCP\n  status:\n    loadBalancer:\n      ingress:\n      - ip: {VIP}\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: web\n    namespace: shop\n  spec:\n    type: ClusterIP\n    clusterIP: 10.96.1.1\n    selector:\n      app: web\n    ports:\n    - name: http\n      port: 8080\n      targetPort: 8080\n      protocol: TCP\n"),
    )?;
    fs::write(
        dir.join("cluster/ingress.yaml"),
        format!("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: nginx\nspec:\n  controller: k8s.io/ingress-nginx\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  ingressClassName: nginx\n  rules:\n  - host: {HOST}\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: web\n            port:\n              number: 8080\n"),
    )?;
    Ok(())
}
