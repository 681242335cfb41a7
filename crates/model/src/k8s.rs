//! Kubernetes objects and load-balancer configuration, lowered.

/// The cluster's objects.
#[derive(Debug, Default, Clone)]
pub struct Cluster {}
