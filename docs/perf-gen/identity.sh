#!/bin/bash
# identity.sh KUBEPATH OUTDIR [GENERATED-1K-SNAPSHOT]
# Runs check/reach/trace --json on the identity set of docs/PERFORMANCE.md (branch scale3):
# every fixtures/trace/* snapshot, examples/dc173 and, when given, a generated 1,000-service
# snapshot (`kubepath gen snapshot DIR --services 1000 --endpoints-per-service 10 --nodes 200
# --ingress-hosts 200 --link-identical --seed 1`). One file per run: stdout plus the exit code,
# and stderr. Run it from the repository root with two binaries and compare: diff -r OUT1 OUT2.
set -u
BIN=$1; OUT=$2; G1K=${3:-}
mkdir -p "$OUT"
run() { local name=$1; shift; "$BIN" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"; echo "rc=$?" >> "$OUT/$name.out"; }
for c in $(ls fixtures/trace | grep -v README); do
  S=fixtures/trace/$c
  run "fx-$c-check" check "$S" --json
  run "fx-$c-reach" reach "$S" --json
  run "fx-$c-trace" trace "$S" --from 10.200.0.10 --to http://web.example.com/ --json
  run "fx-$c-trace-vip" trace "$S" --from 10.200.0.10 --to 10.99.0.10:80 --json
  run "fx-$c-trace-wi" trace "$S" --from 10.200.0.10 --to http://web.example.com/ --json \
      --what-if "ip route add 10.200.0.10/32 via 10.1.0.254"
done
run dc-check check examples/dc173 --json
run dc-reach reach examples/dc173 --json
run dc-trace trace examples/dc173 --from 10.210.150.87 --to http://dc173prometheus1.cloud.k2.ericsson.se/ --json
run dc-trace2 trace examples/dc173 --from 10.210.150.20 --to http://dc173prometheus1.cloud.k2.ericsson.se/ --json
if [ -n "$G1K" ]; then
  run g1k-trace trace "$G1K" --from 10.210.0.87 --to http://admin-frontend-190.apps.k2.example.com/ --json
  run g1k-trace2 trace "$G1K" --from 10.210.0.5 --to 172.30.0.1:80 --json
  run g1k-reach reach "$G1K" --json
  run g1k-check check "$G1K" --json
fi
