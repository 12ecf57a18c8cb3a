//! healer (to be written).
