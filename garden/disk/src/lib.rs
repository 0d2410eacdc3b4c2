//! garden's disk limit backends.
