#!/bin/sh
# Fill corpus/<target>/ for every fuzz target from the repository's fixtures and ./seeds.
# Run from anywhere; existing corpus entries are kept (libFuzzer adds its own finds there).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
for t in parse_save parse_rules parse_ipset trace; do mkdir -p "$here/corpus/$t"; done

ruleset_files() {
    for f in "$root"/fixtures/iptables/ok/* "$root"/fixtures/iptables/err/* \
        "$here"/seeds/*.iptables-save "$here"/seeds/*.rules; do
        [ -f "$f" ] && echo "$f"
    done
    return 0
}
ipset_files() {
    for f in "$root"/fixtures/ipset/ok/* "$root"/fixtures/ipset/err/* "$here"/seeds/*.save \
        "$root"/fixtures/iptables/ok/*ipset*; do
        [ -f "$f" ] && echo "$f"
    done
    return 0
}

ruleset_files | while read -r f; do
    b=$(basename "$f")
    cp "$f" "$here/corpus/parse_save/$b"
    # parse_rules: first byte selects the default table (3 = nat, 4 = filter).
    { printf '\003'; cat "$f"; } > "$here/corpus/parse_rules/nat-$b"
    { printf '\004'; cat "$f"; } > "$here/corpus/parse_rules/filter-$b"
    # trace: 16 header bytes (see fuzz_targets/trace.rs), then the ruleset. Two packets:
    # an arriving TCP SYN 203.0.113.7:40000 -> 10.96.0.10:80 and a local-origin UDP one.
    { printf '\000\313\000\161\007\012\140\000\012\234\100\000\120\000\000\002'; cat "$f"; } \
        > "$here/corpus/trace/tcp-$b"
    { printf '\141\012\000\000\013\012\140\000\012\234\100\000\065\100\000\000'; cat "$f"; } \
        > "$here/corpus/trace/udp-$b"
done
# trace with ipsets: a ruleset with a same-named .ipset file gets it after a NUL byte, with
# header flag 0x10 (pass the sets to the evaluator).
for f in "$root"/fixtures/iptables/ok/*.iptables-save; do
    [ -f "$f" ] || continue
    sets="${f%.iptables-save}.ipset"
    [ -f "$sets" ] || continue
    { printf '\020\313\000\161\007\012\140\000\012\234\100\000\120\000\000\002'; cat "$f"
      printf '\000'; cat "$sets"; } > "$here/corpus/trace/ipset-$(basename "$f")"
done
ipset_files | while read -r f; do
    cp "$f" "$here/corpus/parse_ipset/$(basename "$f")"
done
for t in parse_save parse_rules parse_ipset trace; do
    echo "$t: $(ls "$here/corpus/$t" | wc -l) seed files"
done
