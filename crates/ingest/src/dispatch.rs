//! The node, router, DNS and nginx.conf readers live in [`crate::net`] (written separately);
//! this module is the one place snapshot discovery calls them through.

pub(crate) use crate::net::{
    finish, read_dns_file, read_nginx_file, read_node_file, read_router_file,
};
