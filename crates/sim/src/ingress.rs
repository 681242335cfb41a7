//! L7: ingress-nginx host and path matching (being written).
