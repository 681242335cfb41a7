//! (being written)
use kubepath_model::nginx::NginxConf;

use crate::diag::{Diagnostic, ParseError, SourceFile};

pub fn read(
    _pod: Option<(&str, &str)>,
    _file: &SourceFile,
    _diags: &mut Vec<Diagnostic>,
) -> Result<Option<NginxConf>, ParseError> {
    Ok(None)
}
