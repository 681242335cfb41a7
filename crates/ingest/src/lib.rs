//! Reads a snapshot directory (see docs/snapshot.md) into a [`kubepath_model::Model`].
//!
//! Each raw format has its own module that parses into its own structure; lowering into the
//! model is explicit. Parsers never panic: they return values plus [`diag::Diagnostic`]s, or a
//! [`diag::ParseError`] naming file, line, column and what was expected.

pub mod diag;
pub mod net;
