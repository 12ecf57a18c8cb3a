//! db tests (to be written).
