//! dns tests (to be written).
