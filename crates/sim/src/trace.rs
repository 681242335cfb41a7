//! The end-to-end trace (being written).
