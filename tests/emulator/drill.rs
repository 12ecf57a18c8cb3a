//! drill tests (to be written).
