//! `kubepath announce` output (being written).
