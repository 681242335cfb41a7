//! The node, router, DNS and nginx.conf readers live in [`crate::net`] (written separately);
//! this module is the one place snapshot discovery calls them through.

use kubepath_model::Model;

use crate::diag::{Diagnostic, ParseError, SourceFile};

pub(crate) fn read_node_file(
    _node: &str,
    _file: &SourceFile,
    _model: &mut Model,
    _diags: &mut Vec<Diagnostic>,
) -> Result<Option<&'static str>, ParseError> {
    Ok(None)
}

pub(crate) fn read_router_file(
    _router: &str,
    _file: &SourceFile,
    _model: &mut Model,
    _diags: &mut Vec<Diagnostic>,
) -> Result<Option<&'static str>, ParseError> {
    Ok(None)
}

pub(crate) fn read_dns_file(
    _file: &SourceFile,
    _model: &mut Model,
    _diags: &mut Vec<Diagnostic>,
) -> Result<Option<&'static str>, ParseError> {
    Ok(None)
}

pub(crate) fn read_nginx_file(
    _pod: Option<(&str, &str)>,
    _file: &SourceFile,
    _model: &mut Model,
    _diags: &mut Vec<Diagnostic>,
) -> Result<Option<&'static str>, ParseError> {
    Ok(None)
}

pub(crate) fn finish(_model: &mut Model, _diags: &mut Vec<Diagnostic>) {}
