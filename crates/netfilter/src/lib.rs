//! kubepath-netfilter (see ARCHITECTURE.md).
