//! kubepath-model (see ARCHITECTURE.md).
