//! kubepath-ingest (see ARCHITECTURE.md).
