//! echo-std (being written)
