//! (being written)
use std::sync::Arc;

use kubepath_model::net::Router;

use super::text::Segment;
use crate::diag::{Diagnostic, ParseError};

pub fn read(
    _file: &Arc<str>,
    _seg: &Segment<'_>,
    _r: &mut Router,
    _diags: &mut Vec<Diagnostic>,
) -> Result<Option<&'static str>, ParseError> {
    Ok(None)
}
