//! kubepath-report (see ARCHITECTURE.md).
