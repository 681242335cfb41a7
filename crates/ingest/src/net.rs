//! Node, router, DNS and nginx.conf readers (being written).
