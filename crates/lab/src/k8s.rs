//! The Kubernetes objects a scenario stands for, written as `kubectl get -o yaml` prints them
//! (`kind: List` of full objects): Nodes, Pods (the ingress and backend tiers and the MetalLB
//! speakers), Services, EndpointSlices, the IngressClass and Ingress, and MetalLB's
//! configuration (metallb.io CRDs: IPAddressPool, BGPPeer, BGPAdvertisement).

use std::fmt::Write as _;

use crate::scenario::{
    Pod, Scenario, Tier, BACKEND_CLUSTER_IP, BACKEND_NS, BACKEND_PORT, BACKEND_SVC, HOST,
    INGRESS_CLUSTER_IP, INGRESS_HEALTH_NODE_PORT, INGRESS_NODE_PORT, INGRESS_NS, INGRESS_SVC,
    LEAF_ASN, NODE_ASN, VIP, VIP_PORT,
};

const TS: &str = "2026-01-01T00:00:00Z";

fn list(items: &[String]) -> String {
    let mut s = String::from("apiVersion: v1\nitems:\n");
    for item in items {
        for (i, line) in item.lines().enumerate() {
            let lead = if i == 0 { "- " } else { "  " };
            let _ = writeln!(s, "{lead}{line}");
        }
    }
    s.push_str("kind: List\nmetadata:\n  resourceVersion: \"\"\n");
    s
}

fn uid(kind: &str, name: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("{kind}/{name}").as_bytes());
    let h: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `cluster/nodes.yaml`.
pub fn nodes(s: &Scenario) -> String {
    let items: Vec<String> = s
        .nodes
        .iter()
        .map(|n| {
            format!(
                "apiVersion: v1\nkind: Node\nmetadata:\n  creationTimestamp: \"{TS}\"\n  labels:\n    kubernetes.io/arch: amd64\n    kubernetes.io/hostname: {name}\n    kubernetes.io/os: linux\n    node-role.kubernetes.io/worker: \"\"\n  name: {name}\n  uid: {uid}\nspec:\n  podCIDR: {cidr}\n  podCIDRs:\n  - {cidr}\nstatus:\n  addresses:\n  - address: {ip}\n    type: InternalIP\n  - address: {name}\n    type: Hostname\n  conditions:\n  - lastHeartbeatTime: \"{TS}\"\n    lastTransitionTime: \"{TS}\"\n    message: kubelet is posting ready status\n    reason: KubeletReady\n    status: \"True\"\n    type: Ready\n  nodeInfo:\n    kubeProxyVersion: v1.18.20\n    kubeletVersion: v1.18.20\n",
                name = n.name,
                uid = uid("Node", &n.name),
                cidr = n.pod_cidr,
                ip = n.internal_ip,
            )
        })
        .collect();
    list(&items)
}

fn pod_yaml(p: &Pod, s: &Scenario) -> String {
    let host_ip = s
        .node(&p.node)
        .map(|n| n.internal_ip.to_string())
        .unwrap_or_default();
    let (labels, image, port_name) = match p.tier {
        Tier::Ingress => (
            "    app: ingress-nginx\n    app.kubernetes.io/component: controller\n    app.kubernetes.io/instance: ingress-nginx\n    app.kubernetes.io/name: ingress-nginx\n",
            "registry.k8s.io/ingress-nginx/controller:v1.9.4",
            "http",
        ),
        Tier::Backend => ("    app: backend\n", "kubepath.test/backend:1", "http"),
    };
    let args = match p.tier {
        Tier::Ingress => "    args:\n    - /nginx-ingress-controller\n    - --publish-service=$(POD_NAMESPACE)/ingress-nginx\n    - --election-id=ingress-nginx-leader\n    - --controller-class=k8s.io/ingress-nginx\n    - --ingress-class=nginx\n",
        Tier::Backend => "",
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  creationTimestamp: \"{TS}\"\n  labels:\n{labels}  name: {name}\n  namespace: {ns}\n  uid: {uid}\nspec:\n  containers:\n  - name: main\n{args}    image: {image}\n    ports:\n    - containerPort: {port}\n      name: {port_name}\n      protocol: TCP\n  nodeName: {node}\nstatus:\n  conditions:\n  - lastTransitionTime: \"{TS}\"\n    status: \"True\"\n    type: Ready\n  hostIP: {host_ip}\n  phase: Running\n  podIP: {ip}\n  podIPs:\n  - ip: {ip}\n",
        name = p.name,
        ns = p.namespace,
        uid = uid("Pod", &p.key()),
        port = p.port,
        node = p.node,
        ip = p.ip,
    )
}

/// `cluster/pods.yaml`: the scenario's pods plus one MetalLB speaker per node (host network).
pub fn pods(s: &Scenario) -> String {
    let mut items: Vec<String> = s.pods.iter().map(|p| pod_yaml(p, s)).collect();
    for n in &s.nodes {
        let name = format!("speaker-{}", n.name);
        items.push(format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  creationTimestamp: \"{TS}\"\n  labels:\n    app: metallb\n    component: speaker\n  name: {name}\n  namespace: metallb-system\n  uid: {uid}\nspec:\n  containers:\n  - args:\n    - --port=7472\n    name: speaker\n    image: quay.io/metallb/speaker:v0.13.12\n  hostNetwork: true\n  nodeName: {node}\nstatus:\n  conditions:\n  - lastTransitionTime: \"{TS}\"\n    status: \"True\"\n    type: Ready\n  hostIP: {ip}\n  phase: Running\n  podIP: {ip}\n  podIPs:\n  - ip: {ip}\n",
            uid = uid("Pod", &format!("metallb-system/{name}")),
            node = n.name,
            ip = n.internal_ip,
        ));
    }
    list(&items)
}

/// `cluster/services.yaml`.
pub fn services(s: &Scenario) -> String {
    let etp = if s.etp_local { "Local" } else { "Cluster" };
    let hc = if s.etp_local {
        format!("  healthCheckNodePort: {INGRESS_HEALTH_NODE_PORT}\n")
    } else {
        String::new()
    };
    let ingress = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  creationTimestamp: \"{TS}\"\n  labels:\n    app.kubernetes.io/name: ingress-nginx\n  name: {INGRESS_SVC}\n  namespace: {INGRESS_NS}\n  uid: {uid}\nspec:\n  clusterIP: {INGRESS_CLUSTER_IP}\n  clusterIPs:\n  - {INGRESS_CLUSTER_IP}\n  externalTrafficPolicy: {etp}\n{hc}  ports:\n  - name: http\n    nodePort: {INGRESS_NODE_PORT}\n    port: {VIP_PORT}\n    protocol: TCP\n    targetPort: http\n  selector:\n    app: ingress-nginx\n  sessionAffinity: None\n  type: LoadBalancer\nstatus:\n  loadBalancer:\n    ingress:\n    - ip: {VIP}\n",
        uid = uid("Service", "ingress-nginx/ingress-nginx"),
    );
    let backend = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  creationTimestamp: \"{TS}\"\n  name: {BACKEND_SVC}\n  namespace: {BACKEND_NS}\n  uid: {uid}\nspec:\n  clusterIP: {BACKEND_CLUSTER_IP}\n  clusterIPs:\n  - {BACKEND_CLUSTER_IP}\n  ports:\n  - name: http\n    port: {BACKEND_PORT}\n    protocol: TCP\n    targetPort: {BACKEND_PORT}\n  selector:\n    app: backend\n  sessionAffinity: None\n  type: ClusterIP\nstatus:\n  loadBalancer: {{}}\n",
        uid = uid("Service", "web/backend"),
    );
    list(&[ingress, backend])
}

/// `cluster/endpointslices.yaml`.
pub fn endpoint_slices(s: &Scenario) -> String {
    let slice = |ns: &str, svc: &str, port: u16, pods: Vec<&Pod>| {
        let mut eps = String::new();
        for p in &pods {
            let _ = write!(
                eps,
                "- addresses:\n  - {ip}\n  conditions:\n    ready: true\n    serving: true\n    terminating: false\n  nodeName: {node}\n  targetRef:\n    kind: Pod\n    name: {name}\n    namespace: {ns}\n    uid: {uid}\n",
                ip = p.ip,
                node = p.node,
                name = p.name,
                uid = uid("Pod", &p.key()),
            );
        }
        let endpoints = if pods.is_empty() {
            "endpoints: []\n".to_string()
        } else {
            format!("endpoints:\n{eps}")
        };
        format!(
            "addressType: IPv4\napiVersion: discovery.k8s.io/v1\n{endpoints}kind: EndpointSlice\nmetadata:\n  creationTimestamp: \"{TS}\"\n  generateName: {svc}-\n  labels:\n    endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io\n    kubernetes.io/service-name: {svc}\n  name: {svc}-abcde\n  namespace: {ns}\n  uid: {uid}\nports:\n- name: http\n  port: {port}\n  protocol: TCP\n",
            uid = uid("EndpointSlice", &format!("{ns}/{svc}")),
        )
    };
    list(&[
        slice(INGRESS_NS, INGRESS_SVC, 80, s.ingress_pods().collect()),
        slice(
            BACKEND_NS,
            BACKEND_SVC,
            BACKEND_PORT,
            s.backend_pods().collect(),
        ),
    ])
}

/// `cluster/ingress.yaml`: the IngressClass and the Ingress the ingress pods serve.
pub fn ingress() -> String {
    let class = format!(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  creationTimestamp: \"{TS}\"\n  name: nginx\n  uid: {uid}\nspec:\n  controller: k8s.io/ingress-nginx\n",
        uid = uid("IngressClass", "nginx"),
    );
    let ing = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  creationTimestamp: \"{TS}\"\n  name: backend\n  namespace: {BACKEND_NS}\n  uid: {uid}\nspec:\n  ingressClassName: nginx\n  rules:\n  - host: {HOST}\n    http:\n      paths:\n      - backend:\n          service:\n            name: {BACKEND_SVC}\n            port:\n              number: {BACKEND_PORT}\n        path: /\n        pathType: Prefix\nstatus:\n  loadBalancer:\n    ingress:\n    - ip: {VIP}\n",
        uid = uid("Ingress", "web/backend"),
    );
    list(&[class, ing])
}

/// `cluster/metallb.yaml`: one pool with the VIP, both leaves as BGP peers, one advertisement.
pub fn metallb(s: &Scenario) -> String {
    let mut items = vec![format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: ingress\n  namespace: metallb-system\n  uid: {uid}\nspec:\n  addresses:\n  - {VIP}/32\n  autoAssign: true\n",
        uid = uid("IPAddressPool", "ingress"),
    )];
    for l in &s.leaves {
        items.push(format!(
            "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata:\n  name: {name}\n  namespace: metallb-system\n  uid: {uid}\nspec:\n  holdTime: 3s\n  myASN: {NODE_ASN}\n  peerASN: {LEAF_ASN}\n  peerAddress: {ip}\n",
            name = l.name,
            uid = uid("BGPPeer", l.name),
            ip = l.om_ip,
        ));
    }
    items.push(format!(
        "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata:\n  name: ingress\n  namespace: metallb-system\n  uid: {uid}\nspec:\n  ipAddressPools:\n  - ingress\n",
        uid = uid("BGPAdvertisement", "ingress"),
    ));
    list(&items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_well_formed() {
        let s = Scenario::by_name("seed").unwrap();
        for text in [
            nodes(&s),
            pods(&s),
            services(&s),
            endpoint_slices(&s),
            ingress(),
            metallb(&s),
        ] {
            assert!(text.starts_with("apiVersion: v1\nitems:\n- "), "{text}");
            assert!(text.contains("kind: List"));
            // No tabs, and every item line is indented under the list.
            for line in text.lines().skip(2) {
                assert!(!line.contains('\t'));
                assert!(
                    line.starts_with("- ")
                        || line.starts_with("  ")
                        || line == "kind: List"
                        || line == "metadata:",
                    "{line:?}"
                );
            }
        }
        assert!(services(&s).contains("externalTrafficPolicy: Cluster"));
        let local = Scenario::by_name("etp-local").unwrap();
        assert!(services(&local).contains("externalTrafficPolicy: Local"));
        let none = Scenario::by_name("no-endpoints").unwrap();
        assert!(endpoint_slices(&none).contains("endpoints: []"));
        assert!(!pods(&none).contains("ingress-nginx-controller"));
    }
}
