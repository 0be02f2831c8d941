//! [`ShortText`]: a status line built with `write!` without allocation.

use core::fmt;

/// At most `N` bytes of text; writing more truncates at a character boundary, silently,
/// because a status line is only ever shown, never parsed.
#[derive(Clone, Copy)]
pub struct ShortText<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> ShortText<N> {
    /// Empty text.
    pub const fn new() -> Self {
        ShortText {
            bytes: [0; N],
            len: 0,
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only whole `str`s or their prefixes up to a char boundary are ever copied in.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl<const N: usize> Default for ShortText<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for ShortText<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

impl<const N: usize> fmt::Display for ShortText<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for ShortText<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn keeps_what_fits() {
        let mut text = ShortText::<16>::new();
        write!(text, "wifi: attempt {}", 3).unwrap();
        assert_eq!(text.as_str(), "wifi: attempt 3");
    }

    #[test]
    fn truncates_at_a_character_boundary() {
        let mut text = ShortText::<8>::new();
        let tail = "é€";
        write!(text, "abcdef{tail}").unwrap();
        assert_eq!(text.as_str(), "abcdefé");
        write!(text, "more").unwrap();
        assert_eq!(text.as_str(), "abcdefé");
    }
}
