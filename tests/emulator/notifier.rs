//! notifier tests (to be written).
