//! resilience tests (to be written).
