#!/usr/bin/env python3
"""Generate the repetitive raw outputs of the dc173 example snapshot.

Deterministic: running it twice writes byte-identical files. It writes, relative to
examples/dc173/:
  cluster/*.yaml                      kubectl get ... -o yaml outputs
  nodes/<node>/{iptables-save,ipset-save,ip-addr,ip-route,ip-rule,sysctl}.txt
  routers/<router>/*.txt              SLX-OS show outputs
  dns/*                               BIND zone file, nslookup output

Hand-written files (README.md, kubepath.yaml, the nginx.conf) are not touched.

Facts come from ../../../shared/seed/SCENARIO.md (see ../README.md for the mapping of the
seed's two deployments onto one cluster). Chain names of kube-proxy follow its v1.18
proxier (pkg/proxy/iptables/proxier.go): KUBE-SVC-/KUBE-FW-/KUBE-XLB- + the first 16
characters of base32(sha256(servicePortName + protocol)), KUBE-SEP- the same over
servicePortName + protocol + "ip:port". All names the seed prints match this hash.

Usage: python3 tools/generate.py   (from examples/dc173 or anywhere)
"""

import base64
import hashlib
import ipaddress
import os
import uuid

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# --------------------------------------------------------------------------------------
# The reconciled cluster
# --------------------------------------------------------------------------------------

# name, role, InternalIP, ccd_ecfe_om last octet, ecfe_traf1 last octet, calico /26 block,
# tunl0 address, ifindex offset seed (for MACs)
NODES = [
    ("control-plane-vxt5p", "control-plane", "10.0.10.101", 68, 70, "192.168.33.0/26", "192.168.33.0"),
    ("pool1-5db74894bb-tf54f", "worker", "10.0.10.102", 69, 71, "192.168.107.128/26", "192.168.107.130"),
    ("pool2-9976d6447-nd4xl", "worker", "10.0.10.108", 70, 72, "192.168.103.128/26", "192.168.103.128"),
    ("pool2-9976d6447-ms9hg", "worker", "10.0.10.103", 71, 73, "192.168.188.64/26", "192.168.188.64"),
    ("pool2-9976d6447-r776t", "worker", "10.0.10.105", 72, 74, "192.168.22.192/26", "192.168.22.192"),
    ("pool2-9976d6447-2gnmp", "worker", "10.0.10.104", 73, 75, "192.168.140.0/26", "192.168.140.0"),
    ("pool2-9976d6447-5bhnl", "worker", "10.0.10.106", 74, 76, "192.168.61.128/26", "192.168.61.128"),
    ("pool2-9976d6447-djhjx", "worker", "10.0.10.107", 75, 77, "192.168.212.64/26", "192.168.212.64"),
    ("pool2-9976d6447-xmbcz", "worker", "10.0.10.111", 76, 78, "192.168.150.0/26", "192.168.150.0"),
    ("control-plane-4qjt9", "control-plane", "10.0.10.109", 77, 79, "192.168.95.64/26", "192.168.95.64"),
    ("control-plane-wfb88", "control-plane", "10.0.10.110", 78, 80, "192.168.176.192/26", "192.168.176.192"),
]
NODE = {n[0]: n for n in NODES}
NODES_SORTED = sorted(NODES, key=lambda n: n[0])
CONTROL_PLANES = [n for n in NODES_SORTED if n[1] == "control-plane"]

# Seed facts that pin a node's own interface details.
# pool2-6859c57999-7hfs2 (folded into r776t): `ip a show ecfe_traf1`.
ECFE_TRAF1_MAC = {"pool2-9976d6447-r776t": "36:1f:d1:91:3a:16"}
# tcpdump on control-plane-wfb88's ccd_ecfe_om: destination MAC of the SYNs.
CCD_ECFE_OM_MAC = {"control-plane-wfb88": "ea:a3:88:4e:f3:00"}

CLUSTER_CIDR = "192.168.0.0/16"

# Pods that live on the pod network (they get a cali veth on their node).
# ns, name, node, podIP, labels, kind
PODS_NET = [
    ("ingress-nginx", "nginx-ingress-controller-5dff4dcd48-dfbnr", "pool1-5db74894bb-tf54f", "192.168.107.128"),
    ("ingress-nginx", "nginx-ingress-controller-5dff4dcd48-m69kc", "control-plane-4qjt9", "192.168.95.125"),
    ("ingress-nginx", "nginx-ingress-controller-5dff4dcd48-rcgv8", "control-plane-wfb88", "192.168.176.202"),
    ("ingress-nginx", "nginx-ingress-controller-5dff4dcd48-t8v2g", "pool2-9976d6447-nd4xl", "192.168.103.142"),
    ("evnfm", "eric-pm-server-0", "pool2-9976d6447-ms9hg", "192.168.188.101"),
    ("monitoring", "eric-pm-server-0", "pool2-9976d6447-r776t", "192.168.22.247"),
    ("kube-system", "coredns-6d9c5b8c7f-hx4kq", "control-plane-vxt5p", "192.168.33.3"),
    ("kube-system", "coredns-6d9c5b8c7f-w2p8n", "control-plane-wfb88", "192.168.176.196"),
    ("kube-system", "ecfe-controller-7b8f9c6d5-qz7lx", "control-plane-4qjt9", "192.168.95.66"),
]

SERVICE_ACCOUNT = {
    "ingress-nginx": "nginx-ingress-serviceaccount",
    "evnfm": "eric-pm-server",
    "monitoring": "eric-pm-server",
    "kube-system/coredns": "coredns",
    "kube-system/ecfe-controller": "ecfe-controller",
}


def pod_sa(ns, name):
    if ns == "kube-system":
        return "coredns" if name.startswith("coredns") else "ecfe-controller"
    return SERVICE_ACCOUNT[ns]


def cali_iface(ns, pod):
    """Calico's veth name: "cali" + first 11 hex chars of sha1("<namespace>.<pod>")."""
    return "cali" + hashlib.sha1(f"{ns}.{pod}".encode()).hexdigest()[:11]


def kp_hash(s):
    return base64.b32encode(hashlib.sha256(s.encode()).digest()).decode()[:16]


def stable_uuid(*parts):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "kubepath-dc173/" + "/".join(parts)))


def stable_hex(n, *parts):
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:n]


def mac_for(*parts, prefix=None):
    h = hashlib.sha256("/".join(parts).encode()).digest()
    octets = list(h[:6])
    if prefix:
        octets[: len(prefix)] = prefix
    else:
        octets[0] = (octets[0] & 0xFC) | 0x02  # locally administered, unicast
    return ":".join(f"{o:02x}" for o in octets)


# Services: ns, name, type, clusterIP, ports[(name, port, proto, targetPort, nodePort)],
# selector, lbIP, extra
SERVICES = [
    ("default", "kubernetes", "ClusterIP", "10.96.0.1", [("https", 443, "TCP", 6443, None)], None, None),
    ("kube-system", "kube-dns", "ClusterIP", "10.96.0.10",
     [("dns", 53, "UDP", 53, None), ("dns-tcp", 53, "TCP", 53, None), ("metrics", 9153, "TCP", 9153, None)],
     {"k8s-app": "kube-dns"}, None),
    ("ingress-nginx", "ingress-nginx", "LoadBalancer", "10.97.74.168",
     [("http", 80, "TCP", 80, 32151), ("https", 443, "TCP", 443, 31255)],
     {"app": "ingress-nginx"}, "10.33.151.160"),
    ("monitoring", "eric-pm-server", "ClusterIP", "10.107.185.250", [("http", 9090, "TCP", 9090, None)],
     {"app": "eric-pm-server", "component": "server", "release": "pm-server"}, None),
    ("evnfm", "eric-pm-server", "ClusterIP", "10.109.62.41", [("http", 9090, "TCP", 9090, None)],
     {"app": "eric-pm-server", "component": "server", "release": "pm-server"}, None),
]


def endpoints_of(svc):
    """Endpoint IPs of a Service, sorted as strings (the endpoints controller's order and
    the order of the seed's KUBE-SEP chains)."""
    ns, name = svc[0], svc[1]
    if (ns, name) == ("default", "kubernetes"):
        return sorted(n[2] for n in CONTROL_PLANES)
    if (ns, name) == ("kube-system", "kube-dns"):
        return sorted(p[3] for p in PODS_NET if p[1].startswith("coredns"))
    if ns == "ingress-nginx":
        return sorted(p[3] for p in PODS_NET if p[0] == "ingress-nginx")
    return sorted(p[3] for p in PODS_NET if p[0] == ns and p[1] == "eric-pm-server-0")


def pod_by_ip(ip):
    for p in PODS_NET:
        if p[3] == ip:
            return p
    return None


def node_of_ip(ip):
    for n in NODES:
        if n[2] == ip:
            return n
    return None


# --------------------------------------------------------------------------------------
# A small YAML emitter in kubectl's (go-yaml v2) style: keys sorted, sequences not indented
# under their key, strings quoted with double quotes only where a plain scalar would be
# read as something else, multi-line strings as literal blocks.
# --------------------------------------------------------------------------------------

class Lit(str):
    """A string emitted as a literal block scalar (`|`)."""


def _needs_quote(s):
    """Whether go-yaml v2 would quote this string (it would otherwise read back as
    another type or break the syntax)."""
    import re

    if s == "":
        return True
    if s.lower() in ("true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"):
        return True
    try:
        float(s)
        return True
    except ValueError:
        pass
    if re.match(r"^\d{4}-\d{2}-\d{2}", s):
        return True
    if s[0] in "!&*?{}[],#|>@`\"'%: " or s[-1] == " ":
        return True
    if s[0] == "-" and (len(s) == 1 or s[1] == " "):
        return True
    if ": " in s or " #" in s or s.endswith(":"):
        return True
    return False


def _scalar(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    s = str(v)
    if _needs_quote(s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return s


def yaml_dump(obj):
    out = []

    def emit(o, indent, first_prefix=None):
        pad = " " * indent
        if isinstance(o, dict):
            if not o:
                return None
            keys = sorted(o.keys())
            for i, k in enumerate(keys):
                v = o[k]
                prefix = first_prefix if (i == 0 and first_prefix is not None) else pad
                key = _scalar(k)
                if isinstance(v, dict):
                    if not v:
                        out.append(f"{prefix}{key}: {{}}")
                    else:
                        out.append(f"{prefix}{key}:")
                        emit(v, indent + 2)
                elif isinstance(v, list):
                    if not v:
                        out.append(f"{prefix}{key}: []")
                    else:
                        out.append(f"{prefix}{key}:")
                        emit(v, indent)
                elif isinstance(v, Lit):
                    out.append(f"{prefix}{key}: |")
                    for line in v.rstrip("\n").split("\n"):
                        out.append((pad + "  " + line) if line else "")
                else:
                    out.append(f"{prefix}{key}: {_scalar(v)}")
        elif isinstance(o, list):
            for item in o:
                if isinstance(item, dict):
                    if not item:
                        out.append(f"{pad}- {{}}")
                    else:
                        emit(item, indent + 2, first_prefix=f"{pad}- ")
                elif isinstance(item, list):
                    raise ValueError("nested lists not used")
                else:
                    out.append(f"{pad}- {_scalar(item)}")
        else:
            raise ValueError(o)

    emit(obj, 0)
    return "\n".join(out) + "\n"


def write(rel, text):
    path = os.path.join(ROOT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# Timestamps: the snapshot was taken on 2020-09-21 (the seed's `Last login: Mon Sep 21
# 16:27:26 2020`). The cluster was created 28 days earlier (the Ingress's AGE 28d).
CLUSTER_CREATED = "2020-08-24T09:12:05Z"


def ts_plus(base, days=0, hours=0, minutes=0, seconds=0):
    import datetime

    t = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%SZ")
    t += datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


RV = [1000]


def rv():
    # deterministic, increasing resourceVersions
    RV[0] += 137
    return str(4_800_000 + RV[0])


def k8s_list(items):
    return {
        "apiVersion": "v1",
        "items": items,
        "kind": "List",
        "metadata": {"resourceVersion": "", "selfLink": ""},
    }


# ------------------------------- nodes ------------------------------------------------

def node_obj(n):
    name, role, ip = n[0], n[1], n[2]
    idx = NODES.index(n)
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "ccd/version": "2.12.0",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "node-pool": name.split("-")[0] if role == "worker" else "control-plane",
    }
    if role == "control-plane":
        labels["node-role.kubernetes.io/master"] = ""
    else:
        labels["node-role.kubernetes.io/worker"] = "worker"
    hb = "2020-09-21T16:29:" + f"{10 + idx:02d}Z"
    created = ts_plus(CLUSTER_CREATED, minutes=3 * idx) if role == "control-plane" else ts_plus(
        "2020-09-02T08:41:00Z", minutes=4 * idx)
    cond = lambda t, s, reason, msg, lt: {  # noqa: E731
        "lastHeartbeatTime": hb, "lastTransitionTime": lt, "message": msg, "reason": reason,
        "status": s, "type": t}
    obj = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "annotations": {
                "kubeadm.alpha.kubernetes.io/cri-socket": "/var/run/dockershim.sock",
                "node.alpha.kubernetes.io/ttl": "0",
                "projectcalico.org/IPv4Address": f"{ip}/24",
                "projectcalico.org/IPv4IPIPTunnelAddr": n[6],
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
            "creationTimestamp": created,
            "labels": labels,
            "name": name,
            "resourceVersion": rv(),
            "selfLink": f"/api/v1/nodes/{name}",
            "uid": stable_uuid("node", name),
        },
        "spec": {},
        "status": {
            "addresses": [{"address": ip, "type": "InternalIP"}, {"address": name, "type": "Hostname"}],
            "allocatable": {"cpu": "15800m" if role == "worker" else "3800m",
                            "ephemeral-storage": "95551679124", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                            "memory": "63843588Ki" if role == "worker" else "15776484Ki", "pods": "110"},
            "capacity": {"cpu": "16" if role == "worker" else "4",
                         "ephemeral-storage": "103680420Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                         "memory": "65989892Ki" if role == "worker" else "16379108Ki", "pods": "110"},
            "conditions": [
                cond("NetworkUnavailable", "False", "CalicoIsUp", "Calico is running on this node",
                     ts_plus(created, minutes=2)),
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available",
                     ts_plus(created, minutes=1)),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure",
                     ts_plus(created, minutes=1)),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available",
                     ts_plus(created, minutes=1)),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status. AppArmor enabled",
                     ts_plus(created, minutes=2)),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "images": [
                {"names": ["registry.eccd.local:5000/calico-node@sha256:" + stable_hex(64, "img", "calico"),
                           "registry.eccd.local:5000/calico-node:v3.15.1-1-ccd"], "sizeBytes": 262337520},
                {"names": ["registry.eccd.local:5000/kube-proxy@sha256:" + stable_hex(64, "img", "kp"),
                           "registry.eccd.local:5000/kube-proxy:v1.18.8"], "sizeBytes": 117312024},
                {"names": ["registry.eccd.local:5000/ecfe-speaker@sha256:" + stable_hex(64, "img", "spk"),
                           "registry.eccd.local:5000/ecfe-speaker:1.2.0-18"], "sizeBytes": 89533410},
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": stable_uuid("boot", name),
                "containerRuntimeVersion": "docker://19.3.11",
                "kernelVersion": "4.12.14-197.51-default",
                "kubeProxyVersion": "v1.18.8",
                "kubeletVersion": "v1.18.8",
                "machineID": stable_hex(32, "machine", name),
                "operatingSystem": "linux",
                "osImage": "SUSE Linux Enterprise Server 15 SP1",
                "systemUUID": stable_uuid("sys", name).upper(),
            },
        },
    }
    return obj


# ------------------------------- services ---------------------------------------------

def svc_obj(s):
    ns, name, typ, cip, ports, selector, lbip = s
    meta = {
        "creationTimestamp": CLUSTER_CREATED if ns in ("default", "kube-system") else "2020-08-24T11:02:47Z",
        "name": name,
        "namespace": ns,
        "resourceVersion": rv(),
        "selfLink": f"/api/v1/namespaces/{ns}/services/{name}",
        "uid": stable_uuid("svc", ns, name),
    }
    if (ns, name) == ("default", "kubernetes"):
        meta["labels"] = {"component": "apiserver", "provider": "kubernetes"}
    elif name == "kube-dns":
        meta["annotations"] = {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}
        meta["labels"] = {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                          "kubernetes.io/name": "KubeDNS"}
    elif ns == "ingress-nginx":
        meta["labels"] = {"app": "ingress-nginx"}
    else:
        meta["creationTimestamp"] = "2020-09-02T13:20:11Z" if ns == "monitoring" else "2020-09-21T11:58:40Z"
        meta["labels"] = {"app": "eric-pm-server", "app.kubernetes.io/managed-by": "Helm",
                          "chart": "eric-pm-server-5.0.0_18", "component": "server",
                          "heritage": "Helm", "release": "pm-server"}
        meta["annotations"] = {"meta.helm.sh/release-name": "pm-server", "meta.helm.sh/release-namespace": ns}
    sp = []
    for pname, port, proto, tport, nport in ports:
        p = {"name": pname, "port": port, "protocol": proto, "targetPort": tport}
        if nport:
            p["nodePort"] = nport
        sp.append(p)
    spec = {"clusterIP": cip, "ports": sp, "sessionAffinity": "None", "type": typ}
    if selector:
        spec["selector"] = selector
    if typ == "LoadBalancer":
        spec["externalTrafficPolicy"] = "Cluster"
    status = {"loadBalancer": {"ingress": [{"ip": lbip}]}} if lbip else {"loadBalancer": {}}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec, "status": status}


def target_ref(ip, svc):
    p = pod_by_ip(ip)
    if p is None:
        return None
    return {"kind": "Pod", "name": p[1], "namespace": p[0], "resourceVersion": rv(),
            "uid": stable_uuid("pod", p[0], p[1])}


def endpoints_obj(s):
    ns, name, typ, cip, ports, selector, lbip = s
    addrs = []
    for ip in endpoints_of(s):
        a = {"ip": ip}
        p = pod_by_ip(ip)
        if p:
            a["nodeName"] = p[2]
            a["targetRef"] = target_ref(ip, s)
        addrs.append(a)
    eports = [{"name": pn, "port": tp, "protocol": pr} for pn, _, pr, tp, _ in ports]
    meta = {
        "creationTimestamp": svc_obj(s)["metadata"]["creationTimestamp"],
        "name": name,
        "namespace": ns,
        "resourceVersion": rv(),
        "selfLink": f"/api/v1/namespaces/{ns}/endpoints/{name}",
        "uid": stable_uuid("ep", ns, name),
    }
    if selector:
        meta["annotations"] = {"endpoints.kubernetes.io/last-change-trigger-time": "2020-09-21T12:01:13Z"}
    if name == "kube-dns":
        meta["labels"] = {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                          "kubernetes.io/name": "KubeDNS"}
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta,
            "subsets": [{"addresses": addrs, "ports": eports}]}


def endpointslice_objs(s):
    ns, name, typ, cip, ports, selector, lbip = s
    eps = []
    for ip in endpoints_of(s):
        e = {"addresses": [ip], "conditions": {"ready": True}}
        p = pod_by_ip(ip)
        if p:
            e["targetRef"] = target_ref(ip, s)
            e["topology"] = {"kubernetes.io/hostname": p[2]}
        eps.append(e)
    sports = [{"name": pn, "port": tp, "protocol": pr} for pn, _, pr, tp, _ in ports]
    if (ns, name) == ("default", "kubernetes"):
        sname = "kubernetes"
        labels = {"kubernetes.io/service-name": "kubernetes"}
        owner = None
    else:
        sname = f"{name}-{stable_hex(5, 'eps', ns, name).translate(str.maketrans('0123456789abcdef', 'bcdfghjklmnpqrst'))}"
        labels = {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                  "kubernetes.io/service-name": name}
        for k, v in (svc_obj(s)["metadata"].get("labels") or {}).items():
            labels[k] = v
        owner = [{"apiVersion": "v1", "blockOwnerDeletion": True, "controller": True, "kind": "Service",
                  "name": name, "uid": stable_uuid("svc", ns, name)}]
    meta = {
        "creationTimestamp": svc_obj(s)["metadata"]["creationTimestamp"],
        "labels": labels,
        "name": sname,
        "namespace": ns,
        "resourceVersion": rv(),
        "selfLink": f"/apis/discovery.k8s.io/v1beta1/namespaces/{ns}/endpointslices/{sname}",
        "uid": stable_uuid("eps", ns, name),
    }
    if owner:
        meta["generateName"] = f"{name}-"
        meta["ownerReferences"] = owner
        meta["annotations"] = {"endpoints.kubernetes.io/last-change-trigger-time": "2020-09-21T12:01:13Z"}
    return {"addressType": "IPv4", "apiVersion": "discovery.k8s.io/v1beta1", "endpoints": eps,
            "kind": "EndpointSlice", "metadata": meta, "ports": sports}


# ------------------------------- pods -------------------------------------------------

def pod_status(node, pod_ip, started, containers, host_network=False):
    n = NODE[node]
    cs = []
    for cname, image in containers:
        cs.append({
            "containerID": "docker://" + stable_hex(64, "ctr", node, pod_ip, cname),
            "image": image,
            "imageID": "docker-pullable://" + image.split(":")[0] + "@sha256:" + stable_hex(64, "img", image),
            "lastState": {},
            "name": cname,
            "ready": True,
            "restartCount": 0,
            "started": True,
            "state": {"running": {"startedAt": ts_plus(started, seconds=9)}},
        })
    cond = lambda t, lt: {"lastProbeTime": None, "lastTransitionTime": lt, "status": "True", "type": t}  # noqa
    return {
        "conditions": [
            cond("Initialized", ts_plus(started, seconds=1)),
            cond("Ready", ts_plus(started, seconds=31)),
            cond("ContainersReady", ts_plus(started, seconds=31)),
            cond("PodScheduled", started),
        ],
        "containerStatuses": cs,
        "hostIP": n[2],
        "phase": "Running",
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "qosClass": "Burstable",
        "startTime": started,
    }


def pod_meta(ns, name, labels, owner_kind, owner_name, created, annotations=None):
    m = {
        "creationTimestamp": created,
        "labels": labels,
        "name": name,
        "namespace": ns,
        "ownerReferences": [{
            "apiVersion": "apps/v1", "blockOwnerDeletion": True, "controller": True,
            "kind": owner_kind, "name": owner_name, "uid": stable_uuid(owner_kind, ns, owner_name)}],
        "resourceVersion": rv(),
        "selfLink": f"/api/v1/namespaces/{ns}/pods/{name}",
        "uid": stable_uuid("pod", ns, name),
    }
    if owner_kind in ("ReplicaSet", "DaemonSet"):
        m["generateName"] = name[: name.rindex("-") + 1]
    if annotations:
        m["annotations"] = annotations
    return m


def sa_volume(sa):
    token = f"{sa}-token-{stable_hex(5, 'tok', sa).translate(str.maketrans('0123456789abcdef', 'bcdfghjklmnpqrst'))}"
    return token, {"name": token, "secret": {"defaultMode": 420, "secretName": token}}


def common_spec(node, sa, containers, volumes, host_network=False, tolerations=None):
    spec = {
        "containers": containers,
        "dnsPolicy": "ClusterFirstWithHostNet" if host_network else "ClusterFirst",
        "enableServiceLinks": True,
        "nodeName": node,
        "priority": 0,
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "serviceAccount": sa,
        "serviceAccountName": sa,
        "terminationGracePeriodSeconds": 30,
        "tolerations": (tolerations or []) + [
            {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists",
             "tolerationSeconds": 300},
            {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists",
             "tolerationSeconds": 300},
        ],
        "volumes": volumes,
    }
    if host_network:
        spec["hostNetwork"] = True
    return spec


def ingress_pod(p):
    ns, name, node, ip = p
    image = "registry.eccd.local:5000/nginx-ingress-controller:0.32.0"
    token, tv = sa_volume("nginx-ingress-serviceaccount")
    container = {
        "args": [
            "/nginx-ingress-controller",
            "--configmap=$(POD_NAMESPACE)/nginx-configuration",
            "--tcp-services-configmap=$(POD_NAMESPACE)/tcp-services",
            "--udp-services-configmap=$(POD_NAMESPACE)/udp-services",
            "--annotations-prefix=nginx.ingress.kubernetes.io",
            "--enable-ssl-passthrough",
        ],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE",
             "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
        ],
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "lifecycle": {"preStop": {"exec": {"command": ["/wait-shutdown"]}}},
        "livenessProbe": {"failureThreshold": 3, "httpGet": {"path": "/healthz", "port": 10254, "scheme": "HTTP"},
                          "initialDelaySeconds": 10, "periodSeconds": 10, "successThreshold": 1,
                          "timeoutSeconds": 10},
        "name": "nginx-ingress-controller",
        "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"},
                  {"containerPort": 443, "name": "https", "protocol": "TCP"}],
        "readinessProbe": {"failureThreshold": 3, "httpGet": {"path": "/healthz", "port": 10254, "scheme": "HTTP"},
                           "periodSeconds": 10, "successThreshold": 1, "timeoutSeconds": 10},
        "resources": {"requests": {"cpu": "100m", "memory": "90Mi"}},
        "securityContext": {"allowPrivilegeEscalation": True,
                            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                            "runAsUser": 101},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": token,
                          "readOnly": True}],
    }
    spec = common_spec(node, "nginx-ingress-serviceaccount", [container], [tv])
    spec["nodeSelector"] = {"kubernetes.io/os": "linux"}
    spec["terminationGracePeriodSeconds"] = 300
    started = "2020-08-24T11:03:" + f"{10 + PODS_NET.index(p):02d}Z"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": pod_meta(ns, name, {"app": "ingress-nginx", "pod-template-hash": "5dff4dcd48"},
                             "ReplicaSet", "nginx-ingress-controller-5dff4dcd48", started,
                             {"cni.projectcalico.org/podIP": f"{ip}/32", "cni.projectcalico.org/podIPs": f"{ip}/32",
                              "prometheus.io/port": "10254", "prometheus.io/scrape": "true"}),
        "spec": spec,
        "status": pod_status(node, ip, started, [("nginx-ingress-controller", image)]),
    }


def pm_pod(p):
    ns, name, node, ip = p
    started = "2020-09-19T15:21:48Z" if ns == "monitoring" else "2020-09-21T11:58:52Z"  # AGE 2d1h / 4h29m
    img_srv = "registry.eccd.local:5000/eric-pm-server:5.0.0-18"
    img_rel = "registry.eccd.local:5000/eric-pm-configmap-reload:5.0.0-18"
    token, tv = sa_volume("eric-pm-server")
    c1 = {
        "args": ["--config.file=/etc/config/prometheus.yml", "--storage.tsdb.path=/data",
                 "--storage.tsdb.retention.time=15d", "--web.console.libraries=/etc/prometheus/console_libraries",
                 "--web.console.templates=/etc/prometheus/consoles", "--web.enable-lifecycle"],
        "image": img_srv,
        "imagePullPolicy": "IfNotPresent",
        "livenessProbe": {"failureThreshold": 3, "httpGet": {"path": "/-/healthy", "port": 9090, "scheme": "HTTP"},
                          "initialDelaySeconds": 30, "periodSeconds": 10, "successThreshold": 1,
                          "timeoutSeconds": 30},
        "name": "eric-pm-server",
        "ports": [{"containerPort": 9090, "name": "http", "protocol": "TCP"}],
        "readinessProbe": {"failureThreshold": 3, "httpGet": {"path": "/-/ready", "port": 9090, "scheme": "HTTP"},
                           "initialDelaySeconds": 30, "periodSeconds": 10, "successThreshold": 1,
                           "timeoutSeconds": 30},
        "resources": {"limits": {"cpu": "2", "memory": "2Gi"}, "requests": {"cpu": "250m", "memory": "512Mi"}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": [{"mountPath": "/etc/config", "name": "config-volume"},
                         {"mountPath": "/data", "name": "storage-volume"},
                         {"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": token,
                          "readOnly": True}],
    }
    c2 = {
        "args": ["--volume-dir=/etc/config", "--webhook-url=http://127.0.0.1:9090/-/reload"],
        "image": img_rel,
        "imagePullPolicy": "IfNotPresent",
        "name": "eric-pm-configmap-reload",
        "resources": {"limits": {"cpu": "200m", "memory": "32Mi"}, "requests": {"cpu": "100m", "memory": "8Mi"}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": [{"mountPath": "/etc/config", "name": "config-volume", "readOnly": True},
                         {"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": token,
                          "readOnly": True}],
    }
    vols = [{"configMap": {"defaultMode": 420, "name": "eric-pm-server"}, "name": "config-volume"},
            {"name": "storage-volume", "persistentVolumeClaim": {"claimName": "storage-volume-eric-pm-server-0"}},
            tv]
    spec = common_spec(node, "eric-pm-server", [c1, c2], vols)
    spec["hostname"] = "eric-pm-server-0"
    spec["subdomain"] = "eric-pm-server"
    labels = {"app": "eric-pm-server", "component": "server", "controller-revision-hash": "eric-pm-server-6b8d9f7c4d",
              "release": "pm-server", "statefulset.kubernetes.io/pod-name": "eric-pm-server-0"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": pod_meta(ns, name, labels, "StatefulSet", "eric-pm-server", started,
                             {"cni.projectcalico.org/podIP": f"{ip}/32", "cni.projectcalico.org/podIPs": f"{ip}/32"}),
        "spec": spec,
        "status": pod_status(node, ip, started, [("eric-pm-configmap-reload", img_rel), ("eric-pm-server", img_srv)]),
    }


SPEAKER_SUFFIX = {}


def speaker_pod(n):
    node = n[0]
    suffix = stable_hex(5, "spk", node).translate(str.maketrans("0123456789abcdef", "bcdfghjklmnpqrst"))
    name = f"ecfe-speaker-{suffix}"
    SPEAKER_SUFFIX[node] = name
    image = "registry.eccd.local:5000/ecfe-speaker:1.2.0-18"
    token, tv = sa_volume("ecfe-speaker")
    c = {
        "args": ["--port=7472", "--config=ecfe-ccdadm"],
        "env": [
            {"name": "METALLB_NODE_NAME",
             "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}},
            {"name": "METALLB_HOST", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.hostIP"}}},
            {"name": "METALLB_ML_BIND_ADDR",
             "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
        ],
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "name": "speaker",
        "ports": [{"containerPort": 7472, "hostPort": 7472, "name": "monitoring", "protocol": "TCP"}],
        "resources": {"limits": {"cpu": "100m", "memory": "100Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False,
                            "capabilities": {"add": ["NET_ADMIN", "NET_RAW", "SYS_ADMIN"], "drop": ["ALL"]},
                            "readOnlyRootFilesystem": True},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": token,
                          "readOnly": True}],
    }
    spec = common_spec(node, "ecfe-speaker", [c], [tv], host_network=True,
                       tolerations=[{"effect": "NoSchedule", "key": "node-role.kubernetes.io/master"}])
    spec["nodeSelector"] = {"beta.kubernetes.io/os": "linux"}
    spec["terminationGracePeriodSeconds"] = 2
    started = ts_plus(CLUSTER_CREATED, hours=1, minutes=NODES.index(n))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": pod_meta("kube-system", name,
                             {"app": "ecfe", "component": "speaker", "controller-revision-hash": "6c7d8b9f44",
                              "pod-template-generation": "1"},
                             "DaemonSet", "ecfe-speaker", started,
                             {"prometheus.io/port": "7472", "prometheus.io/scrape": "true"}),
        "spec": spec,
        "status": pod_status(node, n[2], started, [("speaker", image)], host_network=True),
    }


def ecfe_controller_pod(p):
    ns, name, node, ip = p
    image = "registry.eccd.local:5000/ecfe-controller:1.2.0-18"
    token, tv = sa_volume("ecfe-controller")
    c = {
        "args": ["--port=7472", "--config=ecfe-ccdadm"],
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "name": "controller",
        "ports": [{"containerPort": 7472, "name": "monitoring", "protocol": "TCP"}],
        "resources": {"limits": {"cpu": "100m", "memory": "100Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["all"]},
                            "readOnlyRootFilesystem": True},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": token,
                          "readOnly": True}],
    }
    spec = common_spec(node, "ecfe-controller", [c], [tv])
    spec["nodeSelector"] = {"beta.kubernetes.io/os": "linux"}
    spec["securityContext"] = {"runAsNonRoot": True, "runAsUser": 65534}
    spec["terminationGracePeriodSeconds"] = 0
    started = ts_plus(CLUSTER_CREATED, hours=1, minutes=30)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": pod_meta(ns, name, {"app": "ecfe", "component": "controller", "pod-template-hash": "7b8f9c6d5"},
                             "ReplicaSet", "ecfe-controller-7b8f9c6d5", started,
                             {"cni.projectcalico.org/podIP": f"{ip}/32", "cni.projectcalico.org/podIPs": f"{ip}/32",
                              "prometheus.io/port": "7472", "prometheus.io/scrape": "true"}),
        "spec": spec,
        "status": pod_status(node, ip, started, [("controller", image)]),
    }


def coredns_pod(p):
    ns, name, node, ip = p
    image = "registry.eccd.local:5000/coredns:1.6.7"
    token, tv = sa_volume("coredns")
    c = {
        "args": ["-conf", "/etc/coredns/Corefile"],
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "livenessProbe": {"failureThreshold": 5, "httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
                          "initialDelaySeconds": 60, "periodSeconds": 10, "successThreshold": 1,
                          "timeoutSeconds": 5},
        "name": "coredns",
        "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"},
                  {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                  {"containerPort": 9153, "name": "metrics", "protocol": "TCP"}],
        "readinessProbe": {"failureThreshold": 3, "httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"},
                           "periodSeconds": 10, "successThreshold": 1, "timeoutSeconds": 1},
        "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": [{"mountPath": "/etc/coredns", "name": "config-volume", "readOnly": True},
                         {"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": token,
                          "readOnly": True}],
    }
    vols = [{"configMap": {"defaultMode": 420, "items": [{"key": "Corefile", "path": "Corefile"}],
                           "name": "coredns"}, "name": "config-volume"}, tv]
    spec = common_spec(node, "coredns", [c], vols,
                       tolerations=[{"key": "CriticalAddonsOnly", "operator": "Exists"},
                                    {"effect": "NoSchedule", "key": "node-role.kubernetes.io/master"}])
    spec["dnsPolicy"] = "Default"
    spec["priorityClassName"] = "system-cluster-critical"
    spec["priority"] = 2000000000
    spec["nodeSelector"] = {"kubernetes.io/os": "linux"}
    started = ts_plus(CLUSTER_CREATED, minutes=20 + PODS_NET.index(p))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": pod_meta(ns, name, {"k8s-app": "kube-dns", "pod-template-hash": "6d9c5b8c7f"},
                             "ReplicaSet", "coredns-6d9c5b8c7f", started,
                             {"cni.projectcalico.org/podIP": f"{ip}/32", "cni.projectcalico.org/podIPs": f"{ip}/32"}),
        "spec": spec,
        "status": pod_status(node, ip, started, [("coredns", image)]),
    }


# ------------------------------- ingress, configmap, namespaces -----------------------

def ingress_obj():
    lac = ('{"apiVersion":"extensions/v1beta1","kind":"Ingress","metadata":{"annotations":{},'
           '"labels":{"app":"eric-pm-server","component":"server"},"name":"prometheus-server",'
           '"namespace":"monitoring"},"spec":{"rules":[{"host":"dc173prometheus1.cloud.k2.ericsson.se",'
           '"http":{"paths":[{"backend":{"serviceName":"eric-pm-server","servicePort":9090},'
           '"path":"/"}]}}]}}\n')
    return {
        "apiVersion": "extensions/v1beta1",
        "kind": "Ingress",
        "metadata": {
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": Lit(lac)},
            "creationTimestamp": "2020-08-24T13:44:09Z",
            "generation": 1,
            "labels": {"app": "eric-pm-server", "component": "server"},
            "name": "prometheus-server",
            "namespace": "monitoring",
            "resourceVersion": rv(),
            "selfLink": "/apis/extensions/v1beta1/namespaces/monitoring/ingresses/prometheus-server",
            "uid": stable_uuid("ing", "monitoring", "prometheus-server"),
        },
        "spec": {"rules": [{"host": "dc173prometheus1.cloud.k2.ericsson.se", "http": {"paths": [
            {"backend": {"serviceName": "eric-pm-server", "servicePort": 9090}, "path": "/",
             "pathType": "ImplementationSpecific"}]}}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "10.0.10.102"}, {"ip": "10.0.10.103"},
                                                {"ip": "10.0.10.104"}, {"ip": "10.0.10.108"}]}},
    }


ECFE_PEERS = [("10.33.151.66", ["ingress", "oam-pool"]), ("10.33.151.67", ["ingress", "oam-pool"]),
              ("10.33.152.66", ["traffic-pool"]), ("10.33.152.67", ["traffic-pool"]),
              ("172.80.11.2", ["traffic2-pool"]), ("172.80.11.3", ["traffic2-pool"])]
ECFE_POOLS = [("ingress", "10.33.151.160/32", True), ("oam-pool", "10.33.151.161-10.33.151.167", False),
              ("traffic-pool", "10.33.152.16/28", False), ("traffic2-pool", "10.33.152.32/28", False)]


def ecfe_config_text():
    lines = ["bgp-bfd-peers:"]
    for addr, pools in ECFE_PEERS:
        lines += [f"- peer-address: {addr}", "  peer-asn: 4200000000", "  my-asn: 4259841731",
                  "  hold-time: 3s", "  min-rx: 300ms", "  min-tx: 300ms", "  multiplier: 3",
                  "  my-address-pools:"]
        lines += [f"  - {p}" for p in pools]
    lines.append("address-pools:")
    for name, addr, auto in ECFE_POOLS:
        lines += [f"- name: {name}", "  protocol: bgp", "  addresses:", f"  - {addr}"]
        if not auto:
            lines.append("  auto-assign: false")
    return "\n".join(lines) + "\n"


def configmap_obj():
    return {
        "apiVersion": "v1",
        "data": {"config": Lit(ecfe_config_text())},
        "kind": "ConfigMap",
        "metadata": {
            "creationTimestamp": ts_plus(CLUSTER_CREATED, minutes=55),
            "name": "ecfe-ccdadm",
            "namespace": "kube-system",
            "resourceVersion": rv(),
            "selfLink": "/api/v1/namespaces/kube-system/configmaps/ecfe-ccdadm",
            "uid": stable_uuid("cm", "kube-system", "ecfe-ccdadm"),
        },
    }


NAMESPACES = [("default", CLUSTER_CREATED), ("evnfm", "2020-09-21T11:55:02Z"),
              ("ingress-nginx", "2020-08-24T11:02:31Z"), ("kube-node-lease", CLUSTER_CREATED),
              ("kube-public", CLUSTER_CREATED), ("kube-system", CLUSTER_CREATED),
              ("monitoring", "2020-09-02T13:19:50Z")]


def ns_obj(name, created):
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"creationTimestamp": created, "name": name, "resourceVersion": rv(),
                         "selfLink": f"/api/v1/namespaces/{name}", "uid": stable_uuid("ns", name)},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def gen_cluster():
    def cmd(c):
        return f"# {c}\n" if False else ""  # kubectl output carries no header; see README

    write("cluster/nodes.yaml", yaml_dump(k8s_list([node_obj(n) for n in NODES_SORTED])))
    svcs = sorted(SERVICES, key=lambda s: (s[0], s[1]))
    write("cluster/services.yaml", yaml_dump(k8s_list([svc_obj(s) for s in svcs])))
    write("cluster/endpoints.yaml", yaml_dump(k8s_list([endpoints_obj(s) for s in svcs])))
    write("cluster/endpointslices.yaml", yaml_dump(k8s_list([endpointslice_objs(s) for s in svcs])))
    ing = [ingress_pod(p) for p in PODS_NET if p[0] == "ingress-nginx"]
    write("cluster/pods-ingress-nginx.yaml", yaml_dump(k8s_list(ing)))
    pm = [pm_pod(p) for p in sorted((p for p in PODS_NET if p[1] == "eric-pm-server-0"), key=lambda p: p[0])]
    write("cluster/pods-eric-pm-server.yaml", yaml_dump(k8s_list(pm)))
    ks = [coredns_pod(p) for p in PODS_NET if p[1].startswith("coredns")]
    ks += [ecfe_controller_pod(p) for p in PODS_NET if p[1].startswith("ecfe-controller")]
    ks += [speaker_pod(n) for n in NODES_SORTED]
    ks.sort(key=lambda o: o["metadata"]["name"])
    write("cluster/pods-kube-system.yaml", yaml_dump(k8s_list(ks)))
    write("cluster/ingress-prometheus-server.yaml", yaml_dump(ingress_obj()))
    write("cluster/configmap-ecfe-ccdadm.yaml", yaml_dump(configmap_obj()))
    write("cluster/namespaces.yaml", yaml_dump(k8s_list([ns_obj(*n) for n in NAMESPACES])))


if __name__ == "__main__":
    gen_cluster()
