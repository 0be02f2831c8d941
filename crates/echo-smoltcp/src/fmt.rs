//! Logging shim: the same macro calls go to `log`, to `defmt`, or nowhere.
//!
//! Format strings use only `{}` so that they are valid for both back ends; arguments must
//! implement `Display` (log) and `defmt::Format` (defmt).
#![allow(unused_macros)]

#[cfg(all(feature = "log", feature = "defmt"))]
compile_error!("features `log` and `defmt` are mutually exclusive: enable at most one");

macro_rules! log_with {
    ($level:ident, $s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "log")]
        ::log::$level!($s $(, $x)*);
        #[cfg(feature = "defmt")]
        ::defmt::$level!($s $(, $x)*);
        #[cfg(not(any(feature = "log", feature = "defmt")))]
        let _ = ($(&$x),*);
    }};
}

macro_rules! trace {
    ($($arg:tt)*) => { log_with!(trace, $($arg)*) };
}

macro_rules! debug {
    ($($arg:tt)*) => { log_with!(debug, $($arg)*) };
}

macro_rules! info {
    ($($arg:tt)*) => { log_with!(info, $($arg)*) };
}

macro_rules! warn {
    ($($arg:tt)*) => { log_with!(warn, $($arg)*) };
}
