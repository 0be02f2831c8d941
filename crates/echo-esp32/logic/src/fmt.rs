//! Logging shim: the `log` crate with the `log` feature, nothing otherwise.
#![allow(unused_macros)]

macro_rules! info {
    ($s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "log")]
        ::log::info!($s $(, $x)*);
        #[cfg(not(feature = "log"))]
        let _ = ($( & $x ),*);
    }};
}

macro_rules! warn {
    ($s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "log")]
        ::log::warn!($s $(, $x)*);
        #[cfg(not(feature = "log"))]
        let _ = ($( & $x ),*);
    }};
}
