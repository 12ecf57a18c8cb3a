//! drill (to be written).
