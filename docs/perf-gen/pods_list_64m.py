# A kubectl-shaped `kind: List` of Pods, about 64 MiB of YAML, in cluster/pods.yaml of the
# current directory (docs/PERFORMANCE.md, "A 64 MB Kubernetes List").
import io
import os

os.makedirs("cluster", exist_ok=True)
out = io.StringIO()
out.write("apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\nitems:\n")
i = 0
target = 64 * 1024 * 1024
while out.tell() < target:
    out.write(f"""- apiVersion: v1
  kind: Pod
  metadata:
    name: web-{i}
    namespace: ns-{i % 50}
    labels:
      app: web-{i % 500}
      pod-template-hash: 5dff4dcd48
    uid: 00000000-0000-0000-0000-{i:012d}
  spec:
    nodeName: node-{i % 200}
    containers:
    - name: web
      image: registry.example.com/web:1.2.3
      ports:
      - containerPort: 8080
        name: http
        protocol: TCP
  status:
    phase: Running
    podIP: 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}
    hostIP: 10.250.{(i % 200) >> 8}.{i % 200}
    conditions:
    - type: Ready
      status: "True"
""")
    i += 1
open("cluster/pods.yaml", "w").write(out.getvalue())
print(i, "pods", out.tell(), "bytes")
