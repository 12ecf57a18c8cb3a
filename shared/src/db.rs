//! db (to be written).
