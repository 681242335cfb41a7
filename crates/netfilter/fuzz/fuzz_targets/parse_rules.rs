#![no_main]
//! `iptables [-t TABLE] -S` parser (`Ruleset::add_text` with a default table, the way several
//! per-table files combine): the first byte picks the family and the default table, the rest is
//! the text, added twice to exercise merging.

use kubepath_netfilter::{Family, Ruleset, Table};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const TABLES: [Option<Table>; 6] = [
    None,
    Some(Table::Raw),
    Some(Table::Mangle),
    Some(Table::Nat),
    Some(Table::Filter),
    Some(Table::Security),
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let family = if sel & 0x80 != 0 {
        Family::Ipv6
    } else {
        Family::Ipv4
    };
    let table = TABLES[(sel & 0x7f) as usize % TABLES.len()];
    let text = String::from_utf8_lossy(rest);
    let _ = Ruleset::table_hint("iptables-t-nat-S.txt", &text);
    let _ = Ruleset::sniff(&text);
    let mut rs = Ruleset::new(family);
    match rs.add_text("fuzz-a.rules", &text, table) {
        Ok(diags) => {
            common::check_diagnostics(&text, &diags);
            // A second file with the same text merges into the same tables.
            match rs.add_text("fuzz-b.rules", &text, table) {
                Ok(diags) => common::check_diagnostics(&text, &diags),
                Err(e) => common::check_error(&text, &e),
            }
            let _ = rs.stats();
        }
        Err(e) => common::check_error(&text, &e),
    }
});
