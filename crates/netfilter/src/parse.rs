//! iptables-save / iptables -S parser.

use crate::ruleset::Ruleset;
use crate::types::{Diagnostic, Family, Format, ParseError, Table};

pub(crate) fn parse_into(
    _rs: &mut Ruleset,
    _file: &str,
    _text: &str,
    _default: Option<Table>,
) -> Result<Vec<Diagnostic>, ParseError> {
    Ok(Vec::new())
}

pub(crate) fn guess_family(_text: &str) -> Family {
    Family::Ipv4
}

pub(crate) fn sniff(_text: &str) -> Option<Format> {
    None
}

pub(crate) fn table_hint(_file: &str, _text: &str) -> Option<Table> {
    None
}
