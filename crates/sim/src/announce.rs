//! Which nodes announce which LoadBalancer IPs to which peers (being written).
