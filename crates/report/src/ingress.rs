//! `kubepath ingress` output (being written).
