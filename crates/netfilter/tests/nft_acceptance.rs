//! Acceptance differential against `nft -c -f` (nft checks the text and asks the kernel to
//! validate the transaction without committing it): every nft fixture and every generated
//! kube-proxy-shaped ruleset that nft accepts, the reader accepts; malformed variants of them
//! are refused by both.
//!
//! Privileged: as root with `KUBEPATH_PRIV_TESTS=1` (otherwise it prints `skipped: ...` and
//! passes). Runs in a throwaway network namespace, deleted on every exit path; the host's
//! ruleset is never touched.

mod nft_support;

use kubepath_netfilter::NftRuleset;
use kubepath_netfilter_gen::privileged::{self, Netns};

const SEEDS: u64 = 40;

/// `nft -c` (check only) of `text` in `ns`.
fn check(ns: &Netns, text: &str) -> Result<(), String> {
    ns.exec(&["nft", "-c", "-f", "-"], Some(text)).map(|_| ())
}

#[test]
fn reader_accepts_what_nft_accepts() {
    if !privileged::gate("reader_accepts_what_nft_accepts", &["nft"]) {
        return;
    }
    let ns = Netns::new("acc");
    let mut texts: Vec<(String, String)> = Vec::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nft");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/nft")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "nft"))
        .collect();
    entries.sort();
    for p in entries {
        texts.push((
            p.display().to_string(),
            std::fs::read_to_string(&p).expect("read fixture"),
        ));
    }
    let net = nft_support::Net::lab();
    for seed in 0..SEEDS {
        texts.push((
            format!("generated seed {seed}"),
            nft_support::kube_proxy(seed, &net).text,
        ));
    }
    let (mut accepted, mut refused) = (0, 0);
    let mut failures = Vec::new();
    for (name, text) in &texts {
        let kernel = check(&ns, text);
        let reader = NftRuleset::parse(name, text);
        match (&kernel, &reader) {
            (Ok(()), Ok(_)) => accepted += 1,
            (Err(_), Err(_)) => refused += 1,
            (Ok(()), Err(e)) => {
                failures.push(format!("{name}: nft accepts, the reader refuses: {e}"))
            }
            (Err(k), Ok(_)) => failures.push(format!(
                "{name}: nft refuses ({}), the reader accepts",
                k.lines().next().unwrap_or("")
            )),
        }
        // malformed variants: both must refuse
        if kernel.is_ok() {
            // Seeded by the file's own name, not by where the checkout is (a CI clone's
            // longer path picked another line).
            let base = name.rsplit('/').next().unwrap_or(name);
            for (what, bad) in nft_support::malformed_variants(text, base.len() as u64) {
                let k = check(&ns, &bad);
                let r = NftRuleset::parse(name, &bad);
                match (&k, &r) {
                    (Err(_), Err(_)) => refused += 1,
                    (Ok(()), Ok(_)) => failures.push(format!(
                        "{name} with {what}: nft accepts it (the variant is not malformed)"
                    )),
                    (Ok(()), Err(e)) => failures.push(format!(
                        "{name} with {what}: nft accepts, the reader refuses: {e}"
                    )),
                    (Err(k), Ok(_)) => failures.push(format!(
                        "{name} with {what}: nft refuses ({}), the reader accepts",
                        k.lines().next().unwrap_or("")
                    )),
                }
            }
        }
    }
    println!(
        "nft acceptance: {} texts, {accepted} accepted by both, {refused} refused by both, {} disagreements",
        accepted + refused + failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(accepted >= SEEDS as usize);
}

/// Symbolic chain priorities: nft accepts a name only on the hooks it fits (#14). Every
/// family x chain type x hook x name (with and without an offset) goes through `nft -c -f` and
/// the reader; they agree except where nft releases differ: `dstnat` on output and `srcnat` on
/// input, which nft 1.0.6 refuses and later releases accept (and print in listings). The reader
/// accepts those (a capture from a newer nft must load); on an nft that accepts them too they
/// simply agree.
#[test]
fn priority_names_are_accepted_where_nft_accepts_them() {
    if !privileged::gate(
        "priority_names_are_accepted_where_nft_accepts_them",
        &["nft"],
    ) {
        return;
    }
    let ns = Netns::new("prio");
    let (mut agree, mut version_gap) = (0, 0);
    let mut failures = Vec::new();
    for family in ["ip", "ip6", "inet"] {
        for kind in ["filter", "nat"] {
            for hook in ["prerouting", "input", "forward", "output", "postrouting"] {
                for name in [
                    "raw", "mangle", "dstnat", "filter", "security", "srcnat", "out",
                ] {
                    for offset in ["", " - 10", " + 5"] {
                        let text = format!(
                            "table {family} t {{\n\tchain c {{\n\t\ttype {kind} hook {hook} priority {name}{offset}; policy accept;\n\t}}\n}}\n"
                        );
                        let nft = check(&ns, &text).is_ok();
                        let reader = NftRuleset::parse("prio.nft", &text).is_ok();
                        let gap = (name == "dstnat" && hook == "output")
                            || (name == "srcnat" && hook == "input");
                        if nft == reader {
                            agree += 1;
                        } else if gap && reader && !nft {
                            version_gap += 1;
                        } else {
                            failures.push(format!(
                                "{family} {kind} {hook} priority {name}{offset}: nft {}, the reader {}",
                                if nft { "accepts" } else { "refuses" },
                                if reader { "accepts" } else { "refuses" }
                            ));
                        }
                    }
                }
            }
        }
    }
    println!(
        "nft priority names: {} cases, {agree} agree, {version_gap} accepted by the reader and refused by this (older) nft",
        agree + version_gap + failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(agree > 500, "{agree}");
}
