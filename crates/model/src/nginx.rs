//! ingress-nginx configuration (nginx.conf).

/// One nginx.conf.
#[derive(Debug, Default, Clone)]
pub struct NginxConf {}
