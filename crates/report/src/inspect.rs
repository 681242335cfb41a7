//! `kubepath inspect` output (being written).
