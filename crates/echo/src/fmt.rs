//! Logging and assertion shim, the same file in every crate of the workspace that logs.
//!
//! `trace!` to `error!` go to `defmt` or `log` (features of the same names, exclusive) and
//! compile to nothing otherwise. `unwrap!`, `assert!`, `assert_eq!`, `panic!` and
//! `unreachable!` go to `defmt` with that feature (its compact encoding of the message) and to
//! `core` otherwise, and in unit tests, which run on the host.
//!
//! Format strings use only `{}`, so one call site serves both back ends; arguments implement
//! `Display` (for `log`) and `defmt::Format` (for `defmt`).
#![allow(unused_macros, unused_imports, dead_code)]

#[cfg(all(feature = "defmt", feature = "log"))]
compile_error!("the `defmt` and `log` features are mutually exclusive: enable at most one");

macro_rules! log_at {
    ($level:ident, $s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::$level!($s $(, $x)*);
        #[cfg(feature = "log")]
        ::log::$level!($s $(, $x)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        let _ = ($( & $x ),*);
    }};
}

macro_rules! trace {
    ($($arg:tt)*) => { log_at!(trace, $($arg)*) };
}

macro_rules! debug {
    ($($arg:tt)*) => { log_at!(debug, $($arg)*) };
}

macro_rules! info {
    ($($arg:tt)*) => { log_at!(info, $($arg)*) };
}

macro_rules! warn {
    ($($arg:tt)*) => { log_at!(warn, $($arg)*) };
}

macro_rules! error {
    ($($arg:tt)*) => { log_at!(error, $($arg)*) };
}

macro_rules! unwrap {
    ($arg:expr $(,)?) => {{
        #[cfg(all(feature = "defmt", not(test)))]
        let value = ::defmt::unwrap!($arg);
        #[cfg(not(all(feature = "defmt", not(test))))]
        let value = match $crate::fmt::Unwrap::into_result($arg) {
            ::core::result::Result::Ok(value) => value,
            ::core::result::Result::Err(e) => {
                ::core::panic!("unwrap of `{}` failed: {:?}", ::core::stringify!($arg), e)
            }
        };
        value
    }};
}

macro_rules! assert {
    ($($arg:tt)*) => {{
        #[cfg(all(feature = "defmt", not(test)))]
        ::defmt::assert!($($arg)*);
        #[cfg(not(all(feature = "defmt", not(test))))]
        ::core::assert!($($arg)*);
    }};
}

macro_rules! assert_eq {
    ($($arg:tt)*) => {{
        #[cfg(all(feature = "defmt", not(test)))]
        ::defmt::assert_eq!($($arg)*);
        #[cfg(not(all(feature = "defmt", not(test))))]
        ::core::assert_eq!($($arg)*);
    }};
}

macro_rules! panic {
    ($($arg:tt)*) => {{
        #[cfg(all(feature = "defmt", not(test)))]
        ::defmt::panic!($($arg)*);
        #[cfg(not(all(feature = "defmt", not(test))))]
        ::core::panic!($($arg)*);
    }};
}

macro_rules! unreachable {
    ($($arg:tt)*) => {{
        #[cfg(all(feature = "defmt", not(test)))]
        ::defmt::unreachable!($($arg)*);
        #[cfg(not(all(feature = "defmt", not(test))))]
        ::core::unreachable!($($arg)*);
    }};
}

/// What `unwrap!` accepts without `defmt`: an `Option` or a `Result` with a `Debug` error.
#[cfg(not(all(feature = "defmt", not(test))))]
pub(crate) trait Unwrap {
    type Value;
    type Error: ::core::fmt::Debug;
    fn into_result(self) -> ::core::result::Result<Self::Value, Self::Error>;
}

/// The error `unwrap!` reports for `None`.
#[cfg(not(all(feature = "defmt", not(test))))]
#[derive(Debug)]
pub(crate) struct NoneError;

#[cfg(not(all(feature = "defmt", not(test))))]
impl<T> Unwrap for ::core::option::Option<T> {
    type Value = T;
    type Error = NoneError;
    fn into_result(self) -> ::core::result::Result<T, NoneError> {
        self.ok_or(NoneError)
    }
}

#[cfg(not(all(feature = "defmt", not(test))))]
impl<T, E: ::core::fmt::Debug> Unwrap for ::core::result::Result<T, E> {
    type Value = T;
    type Error = E;
    fn into_result(self) -> ::core::result::Result<T, E> {
        self
    }
}
