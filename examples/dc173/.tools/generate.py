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

Usage: python3 .tools/generate.py   (from examples/dc173 or anywhere)
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

# name, role, InternalIP, ccd_ecfe_om last octet, ecfe_traf1 last octet, Calico /26 block,
# tunl0 address
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

# Pods that live on the pod network (they get a cali veth on their node): ns, name, node, podIP
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


def target_ref(ip):
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
            a["targetRef"] = target_ref(ip)
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
            e["targetRef"] = target_ref(ip)
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

def pod_status(node, pod_ip, started, containers):
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


def speaker_pod(n):
    node = n[0]
    suffix = stable_hex(5, "spk", node).translate(str.maketrans("0123456789abcdef", "bcdfghjklmnpqrst"))
    name = f"ecfe-speaker-{suffix}"
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
        "status": pod_status(node, n[2], started, [("speaker", image)]),
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
    write("cluster/nodes.yaml", yaml_dump(k8s_list([node_obj(n) for n in NODES_SORTED])))
    svcs = sorted(SERVICES, key=lambda s: (s[0], s[1]))
    write("cluster/services.yaml", yaml_dump(k8s_list([svc_obj(s) for s in svcs])))
    write("cluster/endpoints.yaml", yaml_dump(k8s_list([endpoints_obj(s) for s in svcs])))
    write("cluster/endpointslices.yaml", yaml_dump(k8s_list([endpointslice_objs(s) for s in svcs])))
    ing = [ingress_pod(p) for p in PODS_NET if p[0] == "ingress-nginx"]
    write("cluster/pods-ingress-nginx.yaml", yaml_dump(k8s_list(ing)))
    pm = [pm_pod(p) for p in sorted((p for p in PODS_NET if p[1] == "eric-pm-server-0"), key=lambda p: p[0])]
    write("cluster/pods-eric-pm-server.yaml", yaml_dump(k8s_list(pm)))
    dns = [coredns_pod(p) for p in PODS_NET if p[1].startswith("coredns")]
    write("cluster/pods-coredns.yaml", yaml_dump(k8s_list(sorted(dns, key=lambda o: o["metadata"]["name"]))))
    ecfe = [ecfe_controller_pod(p) for p in PODS_NET if p[1].startswith("ecfe-controller")]
    ecfe += [speaker_pod(n) for n in NODES_SORTED]
    write("cluster/pods-ecfe.yaml", yaml_dump(k8s_list(sorted(ecfe, key=lambda o: o["metadata"]["name"]))))
    write("cluster/ingress-prometheus-server.yaml", yaml_dump(ingress_obj()))
    write("cluster/configmap-ecfe-ccdadm.yaml", yaml_dump(configmap_obj()))
    write("cluster/namespaces.yaml", yaml_dump(k8s_list([ns_obj(*n) for n in NAMESPACES])))


# --------------------------------------------------------------------------------------
# iptables-save
# --------------------------------------------------------------------------------------

MASQ_MARK = "0x4000/0x4000"
DROP_MARK = "0x8000/0x8000"

# The order in which kube-proxy's map iteration happened to write the service ports on
# the sync this snapshot shows (Go map order is random; any order is a valid output).
KP_ORDER = [
    ("ingress-nginx", "ingress-nginx", "https"),
    ("kube-system", "kube-dns", "dns-tcp"),
    ("monitoring", "eric-pm-server", "http"),
    ("default", "kubernetes", "https"),
    ("ingress-nginx", "ingress-nginx", "http"),
    ("kube-system", "kube-dns", "metrics"),
    ("evnfm", "eric-pm-server", "http"),
    ("kube-system", "kube-dns", "dns"),
]


def probability(n):
    """kube-proxy writes fmt.Sprintf("%0.5f", 1/n); the statistic match stores it as
    u32 (p * 2^31, rounded) and iptables-save prints stored/2^31 with %.11f -- hence the
    seed's 0.33333333349 for 1/3."""
    stored = round((1.0 / n) * 0x80000000)
    return f"{stored / 0x80000000:.11f}"


def q(s):
    # iptables 1.8 (SLES) prints every comment in double quotes, as in the seed.
    return '"' + s + '"'


def kube_proxy_nat():
    """(chains, rules) of kube-proxy v1.18 in the nat table, identical on every node."""
    chains = {"KUBE-MARK-DROP", "KUBE-MARK-MASQ", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-SERVICES",
              "KUBE-KUBELET-CANARY", "KUBE-PROXY-CANARY"}
    rules = []
    svc_rules, nodeport_rules, per_chain = [], [], []
    svcs = {(s[0], s[1]): s for s in SERVICES}
    for ns, name, pname in KP_ORDER:
        s = svcs[(ns, name)]
        port = [p for p in s[4] if p[0] == pname][0]
        _, sport, proto, tport, nport = port
        pr = proto.lower()
        spn = f"{ns}/{name}:{pname}"
        svc_chain = "KUBE-SVC-" + kp_hash(spn + pr)
        fw_chain = "KUBE-FW-" + kp_hash(spn + pr)
        eps = endpoints_of(s)
        chains.add(svc_chain)
        base = f"-d {s[3]}/32 -p {pr} -m comment --comment {q(spn + ' cluster IP')} -m {pr} --dport {sport}"
        svc_rules.append(("KUBE-SERVICES", f"! -s {CLUSTER_CIDR} {base} -j KUBE-MARK-MASQ"))
        svc_rules.append(("KUBE-SERVICES", f"{base} -j {svc_chain}"))
        if s[6]:
            chains.add(fw_chain)
            c = q(spn + " loadbalancer IP")
            svc_rules.append(("KUBE-SERVICES",
                              f"-d {s[6]}/32 -p {pr} -m comment --comment {c} -m {pr} --dport {sport} -j {fw_chain}"))
            per_chain.append((fw_chain, f"-m comment --comment {c} -j KUBE-MARK-MASQ"))
            per_chain.append((fw_chain, f"-m comment --comment {c} -j {svc_chain}"))
            per_chain.append((fw_chain, f"-m comment --comment {c} -j KUBE-MARK-DROP"))
        if nport:
            c = q(spn)
            nodeport_rules.append(("KUBE-NODEPORTS", f"-p {pr} -m comment --comment {c} -m {pr} --dport {nport} -j KUBE-MARK-MASQ"))
            nodeport_rules.append(("KUBE-NODEPORTS", f"-p {pr} -m comment --comment {c} -m {pr} --dport {nport} -j {svc_chain}"))
        n = len(eps)
        for i, ip in enumerate(eps):
            ep = f"{ip}:{tport}"
            sep = "KUBE-SEP-" + kp_hash(spn + pr + ep)
            chains.add(sep)
            if i < n - 1:
                per_chain.append((svc_chain, f"-m comment --comment {q(spn)} -m statistic --mode random "
                                             f"--probability {probability(n - i)} -j {sep}"))
            else:
                per_chain.append((svc_chain, f"-m comment --comment {q(spn)} -j {sep}"))
            per_chain.append((sep, f"-s {ip}/32 -m comment --comment {q(spn)} -j KUBE-MARK-MASQ"))
            per_chain.append((sep, f"-p {pr} -m comment --comment {q(spn)} -m {pr} -j DNAT --to-destination {ep}"))
    svc_rules.append(("KUBE-SERVICES", "-m comment --comment "
                      + q("kubernetes service nodeports; NOTE: this must be the last rule in this chain")
                      + " -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"))
    rules += [("KUBE-MARK-DROP", f"-j MARK --set-xmark {DROP_MARK}"),
              ("KUBE-MARK-MASQ", f"-j MARK --set-xmark {MASQ_MARK}"),
              ("KUBE-POSTROUTING", "-m comment --comment " + q("kubernetes service traffic requiring SNAT")
               + f" -m mark --mark {MASQ_MARK} -j MASQUERADE --random-fully")]
    rules += nodeport_rules + svc_rules + per_chain
    return chains, rules


def cali_hash(*parts):
    return base64.urlsafe_b64encode(hashlib.sha224("|".join(parts).encode()).digest()).decode()[:16]


def limited(prefix, ident):
    """Calico's length-limited chain names (iptables chain names are at most 28 chars)."""
    if len(prefix) + len(ident) <= 28:
        return prefix + ident
    h = base64.urlsafe_b64encode(hashlib.sha256(ident.encode()).digest()).decode()
    return prefix + "_" + h[: 28 - len(prefix) - 1]


# Well-known hashes of Calico's top-level jump rules (the same on every Calico install).
CALI_JUMP = {
    ("raw", "PREROUTING"): "6gwbT8clXdHdC1b1", ("raw", "OUTPUT"): "tVnHkvAo15HuiPy0",
    ("mangle", "PREROUTING"): "6gwbT8clXdHdC1b1",
    ("nat", "PREROUTING"): "6gwbT8clXdHdC1b1", ("nat", "OUTPUT"): "tVnHkvAo15HuiPy0",
    ("nat", "POSTROUTING"): "O3lYWMrLQYEMJtB5",
    ("filter", "INPUT"): "Cz_u1IQiXIMmKD4c", ("filter", "FORWARD"): "wUHhoiAYhphO9Mso",
    ("filter", "OUTPUT"): "tVnHkvAo15HuiPy0",
}

FAILSAFE_IN = [("tcp", 22), ("udp", 68), ("tcp", 179), ("tcp", 2379), ("tcp", 2380), ("tcp", 5473),
               ("tcp", 6443), ("tcp", 6666), ("tcp", 6667)]
FAILSAFE_OUT = [("udp", 53), ("udp", 67), ("tcp", 179), ("tcp", 2379), ("tcp", 2380), ("tcp", 5473),
                ("tcp", 6443), ("tcp", 6666), ("tcp", 6667)]


class Table:
    BUILTIN = {
        "raw": ["PREROUTING", "OUTPUT"],
        "mangle": ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        "nat": ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        "filter": ["INPUT", "FORWARD", "OUTPUT"],
    }

    def __init__(self, name):
        self.name = name
        self.policy = {c: "ACCEPT" for c in self.BUILTIN[name]}
        self.counters = {}
        self.chains = set()
        self.rules = []  # (chain, text) in order

    def chain(self, *names):
        for n in names:
            if n not in self.BUILTIN[self.name]:
                self.chains.add(n)

    def add(self, chain, text):
        self.chain(chain)
        self.rules.append((chain, text))

    def cali(self, chain, text, comment=None):
        """A Calico rule: its hash comment goes first among the matches, after the
        -i/-o/-s/-d/-p selectors (iptables-save prints those first)."""
        h = cali_hash(self.name, chain, str(sum(1 for c, _ in self.rules if c == chain)), text)
        sel, rest = [], text.split(" ")
        i = 0
        while i < len(rest) and rest[i] in ("-i", "-o", "-s", "-d", "-p", "!") :
            if rest[i] == "!":
                sel += [rest[i], rest[i + 1], rest[i + 2]]
                i += 3
            else:
                sel += [rest[i], rest[i + 1]]
                i += 2
        extra = f" -m comment --comment {q(comment)}" if comment else ""
        body = " ".join(rest[i:])
        line = " ".join(sel + [f"-m comment --comment {q('cali:' + h)}"]) + extra + (" " + body if body else "")
        self.add(chain, line)

    def render(self):
        out = [f"*{self.name}"]
        for c in self.BUILTIN[self.name]:
            p, b = self.counters.get(c, (0, 0))
            out.append(f":{c} {self.policy[c]} [{p}:{b}]")
        user = sorted(self.chains)
        for c in user:
            out.append(f":{c} - [0:0]")
        for c in self.BUILTIN[self.name] + user:
            for rc, text in self.rules:
                if rc == c:
                    out.append(f"-A {c} {text}")
        out.append("COMMIT")
        return out


def local_pods(node):
    return [p for p in PODS_NET if p[2] == node]


def profiles_of(p):
    ns, name = p[0], p[1]
    return [f"kns.{ns}", f"ksa.{ns}.{pod_sa(ns, name)}"]


def calico_tables(node, t):
    raw, mangle, nat, flt = t["raw"], t["mangle"], t["nat"], t["filter"]
    pods = local_pods(node)
    # ---- raw
    raw.add("PREROUTING", f"-m comment --comment {q('cali:' + CALI_JUMP[('raw', 'PREROUTING')])} -j cali-PREROUTING")
    raw.add("OUTPUT", f"-m comment --comment {q('cali:' + CALI_JUMP[('raw', 'OUTPUT')])} -j cali-OUTPUT")
    raw.chain("cali-failsafe-in", "cali-failsafe-out", "cali-from-host-endpoint", "cali-to-host-endpoint")
    raw.cali("cali-OUTPUT", "-j MARK --set-xmark 0x0/0xf0000")
    raw.cali("cali-OUTPUT", "-j cali-to-host-endpoint")
    raw.cali("cali-OUTPUT", "-m mark --mark 0x10000/0x10000 -j ACCEPT")
    raw.cali("cali-PREROUTING", "-j MARK --set-xmark 0x0/0xf0000")
    raw.cali("cali-PREROUTING", "-i cali+ -j MARK --set-xmark 0x40000/0x40000")
    raw.cali("cali-PREROUTING", "-m mark --mark 0x0/0x40000 -j cali-from-host-endpoint")
    raw.cali("cali-PREROUTING", "-m mark --mark 0x10000/0x10000 -j ACCEPT")
    for proto, port in FAILSAFE_IN:
        raw.cali("cali-failsafe-in", f"-p {proto} -m multiport --dports {port} -j ACCEPT")
    for proto, port in FAILSAFE_OUT:
        raw.cali("cali-failsafe-out", f"-p {proto} -m multiport --dports {port} -j ACCEPT")
    # ---- mangle
    mangle.add("PREROUTING", f"-m comment --comment {q('cali:' + CALI_JUMP[('mangle', 'PREROUTING')])} -j cali-PREROUTING")
    mangle.chain("cali-from-host-endpoint", "cali-failsafe-in")
    mangle.cali("cali-PREROUTING", "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    mangle.cali("cali-PREROUTING", "-m mark --mark 0x10000/0x10000 -j ACCEPT")
    mangle.cali("cali-PREROUTING", "-j cali-from-host-endpoint")
    mangle.cali("cali-PREROUTING", "-m mark --mark 0x10000/0x10000 -j ACCEPT",
                comment="Host endpoint policy accepted packet.")
    for proto, port in FAILSAFE_IN:
        mangle.cali("cali-failsafe-in", f"-p {proto} -m multiport --dports {port} -j ACCEPT")
    # ---- nat
    nat.chain("cali-fip-dnat", "cali-fip-snat")
    nat.cali("cali-OUTPUT", "-j cali-fip-dnat")
    nat.cali("cali-POSTROUTING", "-j cali-fip-snat")
    nat.cali("cali-POSTROUTING", "-j cali-nat-outgoing")
    nat.cali("cali-POSTROUTING", "-o tunl0 -m addrtype ! --src-type LOCAL --limit-iface-out "
                                 "-m addrtype --src-type LOCAL -j MASQUERADE")
    nat.cali("cali-PREROUTING", "-j cali-fip-dnat")
    nat.cali("cali-nat-outgoing", "-m set --match-set cali40masq-ipam-pools src "
                                  "-m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE")
    # ---- filter
    flt.chain("cali-from-hep-forward", "cali-to-hep-forward", "cali-from-host-endpoint", "cali-to-host-endpoint",
              "cali-cidr-block", "cali-failsafe-in", "cali-failsafe-out")
    flt.cali("cali-FORWARD", "-j MARK --set-xmark 0x0/0xe0000")
    flt.cali("cali-FORWARD", "-m mark --mark 0x0/0x10000 -j cali-from-hep-forward")
    flt.cali("cali-FORWARD", "-i cali+ -j cali-from-wl-dispatch")
    flt.cali("cali-FORWARD", "-o cali+ -j cali-to-wl-dispatch")
    flt.cali("cali-FORWARD", "-j cali-to-hep-forward")
    flt.cali("cali-FORWARD", "-j cali-cidr-block")
    flt.cali("cali-INPUT", "-p ipencap -m set --match-set cali40all-hosts-net src -m addrtype --dst-type LOCAL -j ACCEPT",
             comment="Allow IPIP packets from Calico hosts")
    flt.cali("cali-INPUT", "-p ipencap -j DROP", comment="Drop IPIP packets from non-Calico hosts")
    flt.cali("cali-INPUT", "-i cali+ -g cali-wl-to-host")
    flt.cali("cali-INPUT", "-m mark --mark 0x10000/0x10000 -j ACCEPT")
    flt.cali("cali-INPUT", "-j MARK --set-xmark 0x0/0xf0000")
    flt.cali("cali-INPUT", "-j cali-from-host-endpoint")
    flt.cali("cali-INPUT", "-m mark --mark 0x10000/0x10000 -j ACCEPT", comment="Host endpoint policy accepted packet.")
    flt.cali("cali-OUTPUT", "-m mark --mark 0x10000/0x10000 -j ACCEPT")
    flt.cali("cali-OUTPUT", "-o cali+ -j RETURN")
    flt.cali("cali-OUTPUT", "-p ipencap -m set --match-set cali40all-hosts-net dst -m addrtype --src-type LOCAL -j ACCEPT",
             comment="Allow IPIP packets to other Calico hosts")
    flt.cali("cali-OUTPUT", "-j MARK --set-xmark 0x0/0xf0000")
    flt.cali("cali-OUTPUT", "-m conntrack ! --ctstate DNAT -j cali-to-host-endpoint")
    flt.cali("cali-OUTPUT", "-m mark --mark 0x10000/0x10000 -j ACCEPT", comment="Host endpoint policy accepted packet.")
    for proto, port in FAILSAFE_IN:
        flt.cali("cali-failsafe-in", f"-p {proto} -m multiport --dports {port} -j ACCEPT")
    for proto, port in FAILSAFE_OUT:
        flt.cali("cali-failsafe-out", f"-p {proto} -m multiport --dports {port} -j ACCEPT")
    flt.cali("cali-wl-to-host", "-j cali-from-wl-dispatch")
    flt.cali("cali-wl-to-host", "-j ACCEPT", comment="Configured DefaultEndpointToHostAction")
    # workload dispatch and per-endpoint chains
    flt.chain("cali-from-wl-dispatch", "cali-to-wl-dispatch")
    for p in sorted(pods, key=lambda p: cali_iface(p[0], p[1])):
        iface = cali_iface(p[0], p[1])
        flt.cali("cali-from-wl-dispatch", f"-i {iface} -g cali-fw-{iface}")
    flt.cali("cali-from-wl-dispatch", "-j DROP", comment="Unknown interface")
    for p in sorted(pods, key=lambda p: cali_iface(p[0], p[1])):
        iface = cali_iface(p[0], p[1])
        flt.cali("cali-to-wl-dispatch", f"-o {iface} -g cali-tw-{iface}")
    flt.cali("cali-to-wl-dispatch", "-j DROP", comment="Unknown interface")
    profiles = set()
    for p in pods:
        iface = cali_iface(p[0], p[1])
        fw, tw = f"cali-fw-{iface}", f"cali-tw-{iface}"
        flt.cali(fw, "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        flt.cali(fw, "-m conntrack --ctstate INVALID -j DROP")
        flt.cali(fw, "-j MARK --set-xmark 0x0/0x10000")
        flt.cali(fw, "-p udp -m multiport --dports 4789 -j DROP",
                 comment="Drop VXLAN encapped packets originating in pods")
        flt.cali(fw, "-p ipencap -j DROP", comment="Drop IPinIP encapped packets originating in pods")
        for prof in profiles_of(p):
            flt.cali(fw, f"-j {limited('cali-pro-', prof)}")
            flt.cali(fw, "-m mark --mark 0x10000/0x10000 -j RETURN", comment="Return if profile accepted")
        flt.cali(fw, "-j DROP", comment="Drop if no profiles matched")
        flt.cali(tw, "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        flt.cali(tw, "-m conntrack --ctstate INVALID -j DROP")
        flt.cali(tw, "-j MARK --set-xmark 0x0/0x10000")
        for prof in profiles_of(p):
            flt.cali(tw, f"-j {limited('cali-pri-', prof)}")
            flt.cali(tw, "-m mark --mark 0x10000/0x10000 -j RETURN", comment="Return if profile accepted")
        flt.cali(tw, "-j DROP", comment="Drop if no profiles matched")
        profiles.update(profiles_of(p))
    for prof in sorted(profiles):
        pri, pro = limited("cali-pri-", prof), limited("cali-pro-", prof)
        flt.chain(pri, pro)
        if prof.startswith("kns."):
            # the namespace profile allows everything (no NetworkPolicy in this cluster)
            for ch in (pri, pro):
                flt.cali(ch, "-j MARK --set-xmark 0x10000/0x10000")
                flt.cali(ch, "-m mark --mark 0x10000/0x10000 -j RETURN")


def node_iptables(n):
    node = n[0]
    t = {name: Table(name) for name in ("mangle", "raw", "filter", "nat")}
    t["filter"].policy["FORWARD"] = "DROP"  # docker sets the FORWARD policy to DROP
    seed = int(stable_hex(6, "cnt", node), 16)
    for name, tab in t.items():
        for i, c in enumerate(Table.BUILTIN[name]):
            pk = (seed >> (i * 3)) % 900000 + 1000 * (i + 1)
            tab.counters[c] = (pk, pk * 97 + (seed % 1000))
            if name == "filter" and c == "FORWARD":
                tab.counters[c] = (0, 0)
    nat, flt, mangle = t["nat"], t["filter"], t["mangle"]
    # builtin-chain jumps, in the order the jumps end up (Calico keeps its jump first)
    nat.add("PREROUTING", f"-m comment --comment {q('cali:' + CALI_JUMP[('nat', 'PREROUTING')])} -j cali-PREROUTING")
    nat.add("PREROUTING", f"-m comment --comment {q('kubernetes service portals')} -j KUBE-SERVICES")
    nat.add("PREROUTING", "-m addrtype --dst-type LOCAL -j DOCKER")
    nat.add("OUTPUT", f"-m comment --comment {q('cali:' + CALI_JUMP[('nat', 'OUTPUT')])} -j cali-OUTPUT")
    nat.add("OUTPUT", f"-m comment --comment {q('kubernetes service portals')} -j KUBE-SERVICES")
    nat.add("OUTPUT", "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER")
    nat.add("POSTROUTING", f"-m comment --comment {q('cali:' + CALI_JUMP[('nat', 'POSTROUTING')])} -j cali-POSTROUTING")
    nat.add("POSTROUTING", f"-m comment --comment {q('kubernetes postrouting rules')} -j KUBE-POSTROUTING")
    nat.add("POSTROUTING", "-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE")
    nat.add("DOCKER", "-i docker0 -j RETURN")
    chains, rules = kube_proxy_nat()
    nat.chain(*chains)
    for c, r in rules:
        nat.add(c, r)
    flt.add("INPUT", f"-m comment --comment {q('cali:' + CALI_JUMP[('filter', 'INPUT')])} -j cali-INPUT")
    flt.add("INPUT", f"-m conntrack --ctstate NEW -m comment --comment {q('kubernetes service portals')} -j KUBE-SERVICES")
    flt.add("INPUT", "-m conntrack --ctstate NEW -m comment --comment "
                     f"{q('kubernetes externally-visible service portals')} -j KUBE-EXTERNAL-SERVICES")
    flt.add("INPUT", "-j KUBE-FIREWALL")
    flt.add("FORWARD", f"-m comment --comment {q('cali:' + CALI_JUMP[('filter', 'FORWARD')])} -j cali-FORWARD")
    flt.add("FORWARD", f"-m comment --comment {q('kubernetes forwarding rules')} -j KUBE-FORWARD")
    flt.add("FORWARD", f"-m conntrack --ctstate NEW -m comment --comment {q('kubernetes service portals')} -j KUBE-SERVICES")
    flt.add("FORWARD", "-j DOCKER-USER")
    flt.add("FORWARD", "-j DOCKER-ISOLATION-STAGE-1")
    flt.add("FORWARD", "-o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    flt.add("FORWARD", "-o docker0 -j DOCKER")
    flt.add("FORWARD", "-i docker0 ! -o docker0 -j ACCEPT")
    flt.add("FORWARD", "-i docker0 -o docker0 -j ACCEPT")
    flt.add("FORWARD", f"-m comment --comment {q('cali:S93hcgKJrXEqnTfs')} -m comment --comment "
                       f"{q('Policy explicitly accepted packet.')} -m mark --mark 0x10000/0x10000 -j ACCEPT")
    flt.add("OUTPUT", f"-m comment --comment {q('cali:' + CALI_JUMP[('filter', 'OUTPUT')])} -j cali-OUTPUT")
    flt.add("OUTPUT", f"-m conntrack --ctstate NEW -m comment --comment {q('kubernetes service portals')} -j KUBE-SERVICES")
    flt.add("OUTPUT", "-j KUBE-FIREWALL")
    flt.chain("DOCKER", "KUBE-EXTERNAL-SERVICES", "KUBE-SERVICES", "KUBE-KUBELET-CANARY", "KUBE-PROXY-CANARY")
    flt.add("DOCKER-ISOLATION-STAGE-1", "-i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2")
    flt.add("DOCKER-ISOLATION-STAGE-1", "-j RETURN")
    flt.add("DOCKER-ISOLATION-STAGE-2", "-o docker0 -j DROP")
    flt.add("DOCKER-ISOLATION-STAGE-2", "-j RETURN")
    flt.add("DOCKER-USER", "-j RETURN")
    flt.add("KUBE-FIREWALL", f"-m comment --comment {q('kubernetes firewall for dropping marked packets')} "
                             f"-m mark --mark {DROP_MARK} -j DROP")
    flt.add("KUBE-FIREWALL", f"! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "
                             f"{q('block incoming localnet connections')} -m conntrack ! --ctstate "
                             "RELATED,ESTABLISHED,DNAT -j DROP")
    flt.add("KUBE-FORWARD", "-m conntrack --ctstate INVALID -j DROP")
    flt.add("KUBE-FORWARD", f"-m comment --comment {q('kubernetes forwarding rules')} -m mark --mark {MASQ_MARK} -j ACCEPT")
    flt.add("KUBE-FORWARD", f"-s {CLUSTER_CIDR} -m comment --comment "
                            f"{q('kubernetes forwarding conntrack pod source rule')} "
                            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    flt.add("KUBE-FORWARD", f"-d {CLUSTER_CIDR} -m comment --comment "
                            f"{q('kubernetes forwarding conntrack pod destination rule')} "
                            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    mangle.chain("KUBE-KUBELET-CANARY", "KUBE-PROXY-CANARY")
    calico_tables(node, t)
    # iptables-nft-save prints the tables in this order (mangle, raw, filter, nat)
    stamp = f"Mon Sep 21 16:{31 + NODES.index(n) // 6:02d}:{(7 + NODES.index(n) * 9) % 60:02d} 2020"
    out = []
    for name in ("mangle", "raw", "filter", "nat"):
        out.append(f"# Generated by iptables-nft-save v1.8.4 on {stamp}")
        out += t[name].render()
        out.append(f"# Completed on {stamp}")
    return "\n".join(out) + "\n"


def gen_iptables():
    for n in NODES:
        write(f"nodes/{n[0]}/iptables-save.txt", node_iptables(n))


# --------------------------------------------------------------------------------------
# ipset save, ip addr, ip route show table all, ip rule, sysctl
# --------------------------------------------------------------------------------------

def gen_ipset(n):
    out = []
    for s in ("cali40all-ipam-pools", "cali40masq-ipam-pools"):
        out.append(f"create {s} hash:net family inet hashsize 1024 maxelem 1048576")
        out.append(f"add {s} {CLUSTER_CIDR}")
    out.append("create cali40all-hosts-net hash:net family inet hashsize 1024 maxelem 1048576")
    # members of a hash set come out in hash-bucket order, not sorted
    for ip in sorted((o[2] for o in NODES), key=lambda a: stable_hex(8, "ipset-bucket", a)):
        out.append(f"add cali40all-hosts-net {ip}")
    return "\n".join(out) + "\n"


def ll6(mac):
    """EUI-64 link-local address of a MAC, as the kernel derives it."""
    b = [int(x, 16) for x in mac.split(":")]
    b[0] ^= 0x02
    eui = b[:3] + [0xFF, 0xFE] + b[3:]
    words = [f"{(eui[i] << 8 | eui[i + 1]):x}" for i in range(0, 8, 2)]
    return str(ipaddress.IPv6Address("fe80::" + ":".join(words)))


def node_ifaces(n):
    """The node's interfaces as `ip addr` lists them (dicts: idx, name, flags, mtu, qdisc,
    state, qlen, link line, inet [(addr/len, brd, scope, flags)], inet6 [(addr/len, scope)])."""
    name, role, ip, om, traf, block, tun = n
    eth_mac = mac_for("eth0", name, prefix=[0xFA, 0x16, 0x3E])
    om_mac = CCD_ECFE_OM_MAC.get(name, mac_for("om", name))
    tr_mac = ECFE_TRAF1_MAC.get(name, mac_for("traf", name))
    dk_mac = mac_for("docker0", name, prefix=[0x02, 0x42])
    ifs = []
    ifs.append(dict(idx=1, name="lo", flags="<LOOPBACK,UP,LOWER_UP>", mtu=65536, qdisc="noqueue", state="UNKNOWN",
                    qlen=1000, link="link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00",
                    inet=[("127.0.0.1/8", None, "host", "")], inet6=[("::1/128", "host")]))
    ifs.append(dict(idx=2, name="eth0", flags="<BROADCAST,MULTICAST,UP,LOWER_UP>", mtu=1500, qdisc="pfifo_fast",
                    state="UP", qlen=1000, link=f"link/ether {eth_mac} brd ff:ff:ff:ff:ff:ff",
                    inet=[(f"{ip}/24", "10.0.10.255", "global", "")], inet6=[(ll6(eth_mac) + "/64", "link")]))
    ifs.append(dict(idx=4, name="docker0", flags="<NO-CARRIER,BROADCAST,MULTICAST,UP>", mtu=1500, qdisc="noqueue",
                    state="DOWN", qlen=None, link=f"link/ether {dk_mac} brd ff:ff:ff:ff:ff:ff",
                    inet=[("172.17.0.1/16", "172.17.255.255", "global", "")], inet6=[]))
    ifs.append(dict(idx=5, name="tunl0@NONE", flags="<NOARP,UP,LOWER_UP>", mtu=1440, qdisc="noqueue",
                    state="UNKNOWN", qlen=1000, link="link/ipip 0.0.0.0 brd 0.0.0.0",
                    inet=[(f"{tun}/32", None, "global", "")], inet6=[]))
    om_inet = [(f"10.33.151.{om}/27", "10.33.151.95", "global", "noprefixroute ")]
    if name == "control-plane-vxt5p":
        om_inet.append(("10.33.151.132/32", None, "global", ""))
    ifs.append(dict(idx=11, name="ccd_ecfe_om", flags="<BROADCAST,MULTICAST,UP,LOWER_UP>", mtu=9000, qdisc="noqueue",
                    state="UNKNOWN", qlen=1000, link=f"link/ether {om_mac} brd ff:ff:ff:ff:ff:ff",
                    inet=om_inet, inet6=[(ll6(om_mac) + "/64", "link")]))
    ifs.append(dict(idx=12, name="ecfe_traf1", flags="<BROADCAST,MULTICAST,UP,LOWER_UP>", mtu=9000, qdisc="noqueue",
                    state="UNKNOWN", qlen=1000, link=f"link/ether {tr_mac} brd ff:ff:ff:ff:ff:ff",
                    inet=[(f"10.33.152.{traf}/27", "10.33.152.95", "global", "noprefixroute ")],
                    inet6=[(ll6(tr_mac) + "/64", "link")]))
    for k, p in enumerate(sorted(local_pods(name), key=lambda p: p[3])):
        ifs.append(dict(idx=13 + k, name=cali_iface(p[0], p[1]) + "@if3", flags="<BROADCAST,MULTICAST,UP,LOWER_UP>",
                        mtu=1440, qdisc="noqueue", state="UP", qlen=None,
                        link=f"link/ether ee:ee:ee:ee:ee:ee brd ff:ff:ff:ff:ff:ff link-netnsid {k}",
                        inet=[], inet6=[("fe80::ecee:eeff:feee:eeee/64", "link")], pod=p))
    return ifs


def gen_ip_addr(n):
    out = []
    for i in node_ifaces(n):
        ql = f" qlen {i['qlen']}" if i["qlen"] else " "
        out.append(f"{i['idx']}: {i['name']}: {i['flags']} mtu {i['mtu']} qdisc {i['qdisc']} state {i['state']} "
                   f"group default{ql}")
        out.append(f"    {i['link']}")
        dev = i["name"].split("@")[0]
        for addr, brd, scope, extra in i["inet"]:
            b = f" brd {brd}" if brd else ""
            out.append(f"    inet {addr}{b} scope {scope} {extra}{dev}")
            out.append("       valid_lft forever preferred_lft forever")
        for addr, scope in i["inet6"]:
            out.append(f"    inet6 {addr} scope {scope} ")
            out.append("       valid_lft forever preferred_lft forever")
    return "\n".join(out) + "\n"


def gen_ip_route(n):
    name, role, ip, om, traf, block, tun = n
    main = []  # (sortkey, text)

    def key(prefix):
        net = ipaddress.ip_network(prefix, strict=False)
        return (int(net.network_address), -net.prefixlen)

    main.append((key("0.0.0.0/0"), "default via 10.33.152.65 dev ecfe_traf1 proto static metric 804 "))
    main.append((key("10.0.10.0/24"), f"10.0.10.0/24 dev eth0 proto kernel scope link src {ip} "))
    main.append((key("10.33.151.64/27"),
                 f"10.33.151.64/27 dev ccd_ecfe_om proto kernel scope link src 10.33.151.{om} metric 803 "))
    main.append((key("10.33.152.64/27"),
                 f"10.33.152.64/27 dev ecfe_traf1 proto kernel scope link src 10.33.152.{traf} metric 804 "))
    main.append((key("172.17.0.0/16"), "172.17.0.0/16 dev docker0 proto kernel scope link src 172.17.0.1 linkdown "))
    for other in NODES:
        if other[0] == name:
            main.append((key(block), f"blackhole {block} proto bird "))
        else:
            main.append((key(other[5]), f"{other[5]} via {other[2]} dev tunl0 proto bird onlink "))
    for p in local_pods(name):
        main.append((key(p[3] + "/32"), f"{p[3]} dev {cali_iface(p[0], p[1])} scope link "))
    local = []

    def add_local(dev, cidr, linkdown=""):
        iface = ipaddress.ip_interface(cidr)
        a = str(iface.ip)
        local.append((key(a + "/32"), f"local {a} dev {dev} table local proto kernel scope host src {a} {linkdown}"))
        if iface.network.prefixlen < 31:
            net, brd = str(iface.network.network_address), str(iface.network.broadcast_address)
            local.append((key(net + "/32"),
                          f"broadcast {net} dev {dev} table local proto kernel scope link src {a} {linkdown}"))
            local.append((key(brd + "/32"),
                          f"broadcast {brd} dev {dev} table local proto kernel scope link src {a} {linkdown}"))

    local.append((key("127.0.0.0/8"), "local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1 "))
    local.append((key("127.0.0.1/32"), "local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1 "))
    local.append((key("127.0.0.0/32"), "broadcast 127.0.0.0 dev lo table local proto kernel scope link src 127.0.0.1 "))
    local.append((key("127.255.255.255/32"),
                  "broadcast 127.255.255.255 dev lo table local proto kernel scope link src 127.0.0.1 "))
    add_local("eth0", f"{ip}/24")
    add_local("ccd_ecfe_om", f"10.33.151.{om}/27")
    if name == "control-plane-vxt5p":
        add_local("ccd_ecfe_om", "10.33.151.132/32")
    add_local("ecfe_traf1", f"10.33.152.{traf}/27")
    add_local("docker0", "172.17.0.1/16", "linkdown ")
    add_local("tunl0", f"{tun}/32")
    lines = [t for _, t in sorted(main)] + [t for _, t in sorted(local)]
    # IPv6: link-local prefix routes, then the local table (as `ip route show table all` prints)
    ifs = node_ifaces(n)
    v6devs = [i for i in ifs if i["inet6"] and i["name"] != "lo"]
    for i in v6devs:
        lines.append(f"fe80::/64 dev {i['name'].split('@')[0]} proto kernel metric 256 pref medium")
    lines.append("local ::1 dev lo table local proto kernel metric 0 pref medium")
    # Linux 4.12 (SLES 15 SP1) still attaches IPv6 address routes to lo (they moved to the
    # address's device in 4.15), so the veths' shared link-local address is one route.
    addrs = {i["inet6"][0][0].split("/")[0] for i in v6devs}
    for a in sorted(addrs, key=lambda a: int(ipaddress.IPv6Address(a))):
        lines.append(f"local {a} dev lo table local proto kernel metric 0 pref medium")
    for i in v6devs:
        lines.append(f"multicast ff00::/8 dev {i['name'].split('@')[0]} table local proto kernel metric 256 pref medium")
    return "\n".join(lines) + "\n"


def gen_ip_rule(n):
    return "0:\tfrom all lookup local \n32766:\tfrom all lookup main \n32767:\tfrom all lookup default \n"


def gen_sysctl(n):
    devs = ["all", "default", "ccd_ecfe_om", "docker0", "ecfe_traf1", "eth0", "lo", "tunl0"]
    devs += sorted(cali_iface(p[0], p[1]) for p in local_pods(n[0]))
    rp = {"all": 0, "default": 0, "ccd_ecfe_om": 2, "ecfe_traf1": 2, "eth0": 1, "lo": 0, "docker0": 0, "tunl0": 0}
    fwd = {d: 1 for d in devs}
    keys = []
    for d in sorted(devs, key=lambda d: d):
        keys.append((f"net.ipv4.conf.{d}.forwarding", fwd[d]))
        keys.append((f"net.ipv4.conf.{d}.proxy_arp", 1 if d.startswith("cali") else 0))
        keys.append((f"net.ipv4.conf.{d}.route_localnet", 1 if d == "all" or d.startswith("cali") else 0))
        keys.append((f"net.ipv4.conf.{d}.rp_filter", rp.get(d, 1)))
        keys.append((f"net.ipv4.conf.{d}.src_valid_mark", 0))
    keys.append(("net.ipv4.fib_multipath_hash_policy", 0))
    keys.append(("net.ipv4.fib_multipath_use_neigh", 0))
    keys.append(("net.ipv4.ip_forward", 1))
    keys.append(("net.ipv4.ip_forward_use_pmtu", 0))
    keys.append(("net.bridge.bridge-nf-call-iptables", 1))
    keys.append(("net.netfilter.nf_conntrack_max", 524288))
    keys.append(("net.netfilter.nf_conntrack_tcp_be_liberal", 0))
    keys.sort(key=lambda kv: kv[0])
    return "".join(f"{k} = {v}\n" for k, v in keys)


def gen_nodes():
    for n in NODES:
        d = f"nodes/{n[0]}"
        write(f"{d}/iptables-save.txt", node_iptables(n))
        write(f"{d}/ipset-save.txt", gen_ipset(n))
        write(f"{d}/ip-addr.txt", gen_ip_addr(n))
        write(f"{d}/ip-route.txt", gen_ip_route(n))
        write(f"{d}/ip-rule.txt", gen_ip_rule(n))
        write(f"{d}/sysctl.txt", gen_sysctl(n))


# --------------------------------------------------------------------------------------
# Routers (Extreme SLX-OS)
# --------------------------------------------------------------------------------------

ROUTERS = {
    # name: (Ve 805 address, Ve 806 address, Ve 807 address, system MAC, eBGP default next hops,
    #        own interconnects, peer's interconnects, iBGP peer address)
    "DC173-SLX-L1A": ("10.33.151.66", "10.33.152.66", "172.80.11.2", "0004.96d6.8ebc",
                      ["10.90.0.2", "10.90.0.6"], ["10.90.0.0/30", "10.90.0.4/30"],
                      ["10.90.1.0/30", "10.90.1.4/30"], "21.1.1.1"),
    "DC173-SLX-L1B": ("10.33.151.67", "10.33.152.67", "172.80.11.3", "0004.96d6.8876",
                      ["10.90.1.2", "10.90.1.6"], ["10.90.1.0/30", "10.90.1.4/30"],
                      ["10.90.0.0/30", "10.90.0.4/30"], "21.1.1.0"),
}

BGP_HEADER = [
    "Status codes: s suppressed, d damped, h history, * valid, > best, i internal, S stale, x best-external",
    "Origin codes: i - IGP, e - EGP, ? - incomplete",
    "",
    "     Network            Next Hop        RD              MED        LocPrf     Weight Path",
]


def bgp_line(status, network, nexthop, med, locprf, weight, path):
    return f"{status:<5}{network:<19}{nexthop:<16}{'':<16}{med:<11}{locprf:<11}{weight:<7}{path}"


def gen_bgp_om(router):
    ve805, ve806, ve807, mac, dflt, own_ic, peer_ic, ibgp = ROUTERS[router]
    rows = []
    conn = lambda net: [bgp_line("*>", net, "0.0.0.0", "0", "100", "32768", "?"),  # noqa: E731
                        bgp_line("*i", net, ibgp, "0", "100", "0", "?")]
    rows.append(bgp_line("*>x", "0.0.0.0/0", dflt[0], "none", "100", "0", "100 i"))
    rows.append(bgp_line("*", "0.0.0.0/0", dflt[1], "none", "100", "0", "100 i"))
    rows.append(bgp_line("*i", "0.0.0.0/0", ibgp, "none", "100", "0", "100 i"))
    for net in ("10.33.151.64/27", "10.33.151.96/27", "10.33.151.128/27"):
        rows += conn(net)
    for k, n in enumerate(sorted(NODES, key=lambda n: n[3])):
        rows.append(bgp_line("*>x" if k == 0 else "*", "10.33.151.160/32", f"10.33.151.{n[3]}", "none", "100", "0",
                             "4259841731 i"))
    rows.append(bgp_line("*i", "10.33.151.160/32", ibgp, "none", "100", "0", "4259841731 i"))
    rows += conn("10.33.151.176/28")
    ics = sorted([(net, True) for net in own_ic] + [(net, False) for net in peer_ic],
                 key=lambda x: ipaddress.ip_network(x[0]))
    for net, own in ics:
        if own:
            rows.append(bgp_line("*>", net, "0.0.0.0", "0", "100", "32768", "?"))
        else:
            rows.append(bgp_line("*>i", net, ibgp, "0", "100", "0", "?"))
    rows += conn("21.1.1.0/31")
    rows += conn("172.80.70.0/24")
    head = [f"{router}# show ip bgp vrf DC173_CCD1_om_vr", f"Total number of BGP Routes: {len(rows)}"] + BGP_HEADER
    return "\n".join(head + rows + [f"{router}#"]) + "\n"


def gen_bgp_traffic(router):
    ve805, ve806, ve807, mac, dflt, own_ic, peer_ic, ibgp = ROUTERS[router]
    rows = [bgp_line("*>", "10.33.152.64/27", "0.0.0.0", "0", "100", "32768", "?"),
            bgp_line("*i", "10.33.152.64/27", ibgp, "0", "100", "0", "?")]
    head = [f"{router}# show ip bgp vrf DC173_CCD1_traffic_vr", f"Total number of BGP Routes: {len(rows)}"] + BGP_HEADER
    return "\n".join(head + rows + [f"{router}#"]) + "\n"


def gen_run_int_ve(router):
    ve805, ve806, ve807, *_ = ROUTERS[router]
    out = [f"{router}# show run int ve"]
    for ve, vrf, anycast, addr, plen in ((805, "DC173_CCD1_om_vr", "10.33.151.65/27", ve805, 27),
                                         (806, "DC173_CCD1_traffic_vr", "10.33.152.65/27", ve806, 27),
                                         (807, "DC173_CCD1_traffic2_vr", "172.80.11.1/24", ve807, 24)):
        out += [f"interface Ve {ve}", f" vrf forwarding {vrf}", f" ip anycast-address {anycast}",
                f" ip address {addr}/{plen}", " no shutdown", "!"]
    out.append(f"{router}#")
    return "\n".join(out) + "\n"


def gen_show_interface(router):
    """`show interface | begin "Ve 805"` (the seed's command): every interface section from
    Ve 805 on; Ve 805/806/807 are the last interfaces of these leaves."""
    mac = ROUTERS[router][3]
    out = [f'{router}# show interface | begin "Ve 805"']
    for k, ve in enumerate((805, 806, 807)):
        ifindex = 0x48000000 + ve
        rx = int(stable_hex(7, router, str(ve), "rx"), 16)
        tx = int(stable_hex(7, router, str(ve), "tx"), 16)
        out += [f"Ve {ve} is up, line protocol is up",
                f"Address is {mac}, Current address is {mac}",
                f"Interface index (ifindex) is {ifindex} (0x{ifindex:08x})",
                "IP MTU 9018 bytes",
                "Maximum Speed : Not Applicable",
                "Last clearing of show interface counters: 28d02h11m",
                "Queueing strategy: fifo",
                "Receive Statistics:",
                f"    {rx} packets, {rx * 211} bytes",
                "Transmit Statistics:",
                f"    {tx} packets, {tx * 198} bytes",
                "Time since last interface status change: 28d02h11m",
                ""]
    out.append(f"{router}#")
    return "\n".join(out) + "\n"


def gen_routers():
    for r in ROUTERS:
        d = f"routers/{r}"
        write(f"{d}/show-ip-bgp-vrf-DC173_CCD1_om_vr.txt", gen_bgp_om(r))
        write(f"{d}/show-ip-bgp-vrf-DC173_CCD1_traffic_vr.txt", gen_bgp_traffic(r))
        write(f"{d}/show-run-int-ve.txt", gen_run_int_ve(r))
        write(f"{d}/show-interface-ve.txt", gen_show_interface(r))


# --------------------------------------------------------------------------------------
# DNS
# --------------------------------------------------------------------------------------

ZONE = """$ORIGIN cloud.k2.ericsson.se.
$TTL 3600
@                   IN  SOA   ns1.cloud.k2.ericsson.se. hostmaster.cloud.k2.ericsson.se. (
                              2020092101 ; serial
                              7200       ; refresh
                              1800       ; retry
                              1209600    ; expire
                              300 )      ; negative caching TTL
                    IN  NS    ns1.cloud.k2.ericsson.se.
                    IN  NS    ns2.cloud.k2.ericsson.se.
ns1                 IN  A     10.210.0.53
ns2                 IN  A     10.210.1.53
; DC172 (another CCD cluster on the same fabric)
dc172dashboard1     IN  A     10.33.150.160
dc172prometheus1    IN  CNAME dc172dashboard1
; DC173: everything HTTP goes to the ingress-nginx VIP (ECFE pool "ingress")
dc173dashboard1     IN  A     10.33.151.160
dc173prometheus1    IN  CNAME dc173dashboard1
dc173grafana1       IN  CNAME dc173dashboard1
dc173alertmanager1  IN  CNAME dc173dashboard1
"""

NSLOOKUP = """eccd@control-plane-wfb88:~> nslookup dc173prometheus1.cloud.k2.ericsson.se
Server:\t\t10.96.0.10
Address:\t10.96.0.10#53

Non-authoritative answer:
dc173prometheus1.cloud.k2.ericsson.se\tcanonical name = dc173dashboard1.cloud.k2.ericsson.se.
Name:\tdc173dashboard1.cloud.k2.ericsson.se
Address: 10.33.151.160

eccd@control-plane-wfb88:~>
"""


def gen_dns():
    write("dns/cloud.k2.ericsson.se.zone", ZONE)
    write("dns/nslookup-dc173prometheus1.txt", NSLOOKUP)


if __name__ == "__main__":
    gen_cluster()
    gen_nodes()
    gen_routers()
    gen_dns()
