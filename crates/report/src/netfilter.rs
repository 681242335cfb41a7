//! `kubepath netfilter` output (being written).
