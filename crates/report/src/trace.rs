//! `kubepath trace` output (being written).
