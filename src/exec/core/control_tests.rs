//! Control calls in the core.
