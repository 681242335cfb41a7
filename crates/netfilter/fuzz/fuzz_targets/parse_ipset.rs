#![no_main]
//! `ipset save` parser (`IpSets::parse_save`): arbitrary text gives sets or a positioned error,
//! never a panic.

use kubepath_netfilter::IpSets;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match IpSets::parse_save("fuzz.ipset", &text) {
        Ok((_sets, diags)) => common::check_diagnostics(&text, &diags),
        Err(e) => common::check_error(&text, &e),
    }
});
