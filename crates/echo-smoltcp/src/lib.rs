//! echo-smoltcp (being written)
