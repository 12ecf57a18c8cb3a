//! backup tests (to be written).
