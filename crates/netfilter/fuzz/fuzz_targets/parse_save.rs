#![no_main]
//! `iptables-save` / `ip6tables-save` parser (`Ruleset::parse`, which also guesses the family
//! and reads header-less text as `iptables -S`): arbitrary text gives rules or a positioned
//! error, never a panic.

use kubepath_netfilter::Ruleset;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Ruleset::sniff(&text);
    match Ruleset::parse("fuzz.iptables-save", &text) {
        Ok((rs, diags)) => {
            common::check_diagnostics(&text, &diags);
            let stats = rs.stats();
            assert!(stats.indexed_chains <= stats.chains);
        }
        Err(e) => common::check_error(&text, &e),
    }
});
