//! kubepath-sim (see ARCHITECTURE.md).
