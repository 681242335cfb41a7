//! Seeded ruleset generators for tests and benchmarks (being written).
