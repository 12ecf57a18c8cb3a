//! notifier (to be written).
