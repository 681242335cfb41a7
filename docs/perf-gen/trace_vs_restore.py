#!/usr/bin/env python3
"""Whole-process comparison: `kubepath netfilter trace` against `iptables-restore --test`.

Issue #15 item 3. Alternates, in one run on one file, the two commands

    kubepath netfilter trace --ruleset FILE --src 203.0.113.7 --dst VIP --proto tcp \
        --dport PORT --in-iface eth0
    ip netns exec kp-cmp-<pid> iptables-restore --test < FILE

`--runs` times each (the kubepath run first in each pair), and prints each run, the medians
(wall and CPU: user + system of the process and its children, from wait4) and the ratio of
the medians. VIP:PORT is the Service whose rules come last in nat KUBE-SERVICES (the worst
case for a linear scan), read from FILE. The trace's output is checked (5 outcomes at 0.2).

Run as root (the network namespace), from the repository root, after

    cargo build --release -p kubepath -p kubepath-netfilter --example perf
    target/release/examples/perf --no-iptables --runs 1 --trace-iters 1 --keep /tmp/kp-10k.txt

    sudo python3 docs/perf-gen/trace_vs_restore.py --ruleset /tmp/kp-10k.txt [--runs 7]
        [--kubepath target/release/kubepath]

Without --ruleset it generates the 10,000 x 5 ruleset with the perf example (which must be
built) into a temporary file first.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time


def run(argv, stdin=None):
    """Run argv, return (wall s, cpu s, peak RSS KB, stdout bytes, exit code)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.stderr.write(err.decode(errors="replace"))
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, out, p.returncode


def last_service(path):
    pat = re.compile(
        r"^-A KUBE-SERVICES -d (\d+\.\d+\.\d+\.\d+)/32 -p tcp .* --dport (\d+) -j KUBE-SVC-"
    )
    found = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = pat.match(line)
            if m:
                found = (m.group(1), m.group(2))
    if found is None:
        sys.exit("no `-A KUBE-SERVICES -d VIP/32 -p tcp ... -j KUBE-SVC-` rule in the ruleset")
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ruleset")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--kubepath", default="target/release/kubepath")
    ap.add_argument("--perf-example", default="target/release/examples/perf")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: iptables-restore --test needs a network namespace")

    tmp = None
    path = args.ruleset
    if path is None:
        tmp = tempfile.NamedTemporaryFile(prefix="kp-cmp-", suffix=".txt", delete=False)
        tmp.close()
        path = tmp.name
        subprocess.run(
            [args.perf_example, "--no-iptables", "--runs", "1", "--trace-iters", "1",
             "--keep", path],
            check=True, stdout=subprocess.DEVNULL,
        )
    vip, port = last_service(path)
    size = os.path.getsize(path)
    ns = f"kp-cmp-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    kp_argv = [args.kubepath, "netfilter", "trace", "--ruleset", path, "--src", "203.0.113.7",
               "--dst", vip, "--proto", "tcp", "--dport", port, "--in-iface", "eth0"]
    ipt_argv = ["ip", "netns", "exec", ns, "iptables-restore", "--test"]
    kp, ipt = [], []
    try:
        with open(path, "rb") as f:
            f.read()  # page cache warm for both
        print(f"ruleset {path}: {size} bytes; trace to {vip}:{port}")
        print(f"load average before: {open('/proc/loadavg').read().split()[:3]}")
        for i in range(args.runs):
            w, c, rss, out, rc = run(kp_argv)
            if rc != 0 or b"5 outcomes" not in out or out.count(b": ACCEPT, forwarded, DNAT to ") != 5:
                sys.exit(f"kubepath trace failed or gave an unexpected answer (exit {rc})")
            kp.append((w, c, rss))
            with open(path, "rb") as f:
                w2, c2, rss2, _, rc2 = run(ipt_argv, stdin=f)
            if rc2 != 0:
                sys.exit(f"iptables-restore --test failed (exit {rc2})")
            ipt.append((w2, c2, rss2))
            print(f"run {i + 1}: kubepath {w:.3f} s wall {c:.3f} s CPU {rss / 1024:.0f} MB | "
                  f"iptables-restore --test {w2:.3f} s wall {c2:.3f} s CPU")
    finally:
        subprocess.run(["ip", "netns", "del", ns])
        if tmp is not None:
            os.unlink(path)
    med = lambda v, k: statistics.median(x[k] for x in v)
    kw, kc, km = med(kp, 0), med(kp, 1), med(kp, 2)
    iw, ic = med(ipt, 0), med(ipt, 1)
    print(f"load average after: {open('/proc/loadavg').read().split()[:3]}")
    print(f"median of {args.runs}: kubepath netfilter trace {kw:.3f} s wall, {kc:.3f} s CPU, "
          f"peak {km / 1024:.0f} MB")
    print(f"median of {args.runs}: iptables-restore --test {iw:.3f} s wall, {ic:.3f} s CPU")
    print(f"ratio: {iw / kw:.1f}x wall, {ic / kc:.1f}x CPU")


if __name__ == "__main__":
    main()
