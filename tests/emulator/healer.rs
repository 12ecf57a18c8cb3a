//! healer tests (to be written).
