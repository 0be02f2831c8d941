//! Incremental UTF-8 decoding for the screen: characters split across receives come out whole,
//! invalid bytes come out as U+FFFD. The echoed bytes are never touched by this.

/// Decodes a byte stream that arrives in arbitrary chunks.
///
/// Like `String::from_utf8_lossy` over the whole stream: each maximal invalid subsequence
/// becomes one [`char::REPLACEMENT_CHARACTER`], and a sequence cut at the end of a chunk waits
/// (at most 3 bytes) for the next one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Utf8Decoder {
    /// The bits of the unfinished character read so far.
    bits: u32,
    /// Its first byte.
    lead: u8,
    /// Continuation bytes it still needs; 0 when there is no unfinished character.
    missing: u8,
}

impl Utf8Decoder {
    /// A decoder at the start of a stream.
    pub const fn new() -> Self {
        Utf8Decoder {
            bits: 0,
            lead: 0,
            missing: 0,
        }
    }

    /// Whether bytes of an unfinished character are waiting for the next chunk.
    pub fn has_partial(&self) -> bool {
        self.missing > 0
    }

    /// Decodes `bytes`, calling `emit` for every complete or replacement character.
    ///
    /// A byte at a time, as the decoder of the WHATWG Encoding Standard does: it replaces the
    /// same maximal subparts as `from_utf8_lossy`, in less code than going through
    /// `core::str::from_utf8` (the firmware's flash budget, README "Footprint").
    pub fn decode(&mut self, bytes: &[u8], mut emit: impl FnMut(char)) {
        for &byte in bytes {
            if self.missing > 0 && !self.continues_with(byte) {
                // The character broke off: replace what it had, then read `byte` afresh.
                self.missing = 0;
                emit(char::REPLACEMENT_CHARACTER);
            }
            if let Some(c) = self.push(byte) {
                emit(c);
            }
        }
    }

    /// Ends the stream: an unfinished character becomes one replacement character.
    pub fn finish(&mut self, mut emit: impl FnMut(char)) {
        if self.missing > 0 {
            self.missing = 0;
            emit(char::REPLACEMENT_CHARACTER);
        }
    }

    /// Takes `byte`, a continuation if a character is unfinished; returns the character it
    /// completes, or a replacement for a byte that cannot start one.
    fn push(&mut self, byte: u8) -> Option<char> {
        if self.missing > 0 {
            self.bits = self.bits << 6 | u32::from(byte & 0x3F);
            self.missing -= 1;
            return (self.missing == 0)
                .then(|| char::from_u32(self.bits).unwrap_or(char::REPLACEMENT_CHARACTER));
        }
        match byte {
            0x00..=0x7F => Some(char::from(byte)),
            0xC2..=0xF4 => {
                self.lead = byte;
                self.missing = continuations(byte);
                self.bits = u32::from(byte & (0x3F >> self.missing));
                None
            }
            _ => Some(char::REPLACEMENT_CHARACTER),
        }
    }

    /// Whether `byte` may come next in the unfinished character. Right after some leads the
    /// range is narrower, which rules out overlong forms, surrogates and code points above
    /// U+10FFFF.
    fn continues_with(&self, byte: u8) -> bool {
        let second = self.missing == continuations(self.lead);
        let (low, high) = match (second, self.lead) {
            (true, 0xE0) => (0xA0, 0xBF),
            (true, 0xED) => (0x80, 0x9F),
            (true, 0xF0) => (0x90, 0xBF),
            (true, 0xF4) => (0x80, 0x8F),
            _ => (0x80, 0xBF),
        };
        (low..=high).contains(&byte)
    }
}

/// Continuation bytes after the lead byte `lead` (0xC2 to 0xF4).
fn continuations(lead: u8) -> u8 {
    match lead {
        0xC2..=0xDF => 1,
        0xE0..=0xEF => 2,
        _ => 3,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::string::String;
    use std::vec::Vec;

    fn decode_chunks(chunks: &[&[u8]]) -> String {
        let mut decoder = Utf8Decoder::new();
        let mut out = String::new();
        for chunk in chunks {
            decoder.decode(chunk, |c| out.push(c));
        }
        decoder.finish(|c| out.push(c));
        out
    }

    #[test]
    fn joins_a_character_split_across_chunks() {
        let bytes = "é中😀".as_bytes();
        assert_eq!(
            decode_chunks(&[
                &bytes[..1],
                &bytes[1..3],
                &bytes[3..6],
                &bytes[6..8],
                &bytes[8..]
            ]),
            "é中😀"
        );
    }

    #[test]
    fn replaces_invalid_bytes() {
        assert_eq!(decode_chunks(&[b"a\xffb"]), "a\u{fffd}b");
        assert_eq!(decode_chunks(&[b"a\xe4", b"zz"]), "a\u{fffd}zz");
    }

    #[test]
    fn replaces_a_character_cut_by_the_end_of_the_stream() {
        assert_eq!(decode_chunks(&[b"ok\xe4\xb8"]), "ok\u{fffd}");
    }

    #[test]
    fn matches_lossy_decoding_of_every_sequence_of_boundary_bytes() {
        // The bytes where UTF-8's ranges begin and end, in every 4-byte combination, whole
        // and cut at each position.
        const EDGES: [u8; 21] = [
            b'a', 0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0,
            0xE1, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF,
        ];
        for i in 0..EDGES.len().pow(4) {
            let bytes: Vec<u8> = (0..4)
                .map(|k| EDGES[i / EDGES.len().pow(k) % EDGES.len()])
                .collect();
            let expected = String::from_utf8_lossy(&bytes);
            for cut in 0..=bytes.len() {
                let (a, b) = bytes.split_at(cut);
                assert_eq!(decode_chunks(&[a, b]), expected, "{bytes:x?} cut at {cut}");
            }
        }
    }

    proptest! {
        #[test]
        fn matches_lossy_decoding_of_the_whole_stream(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            cuts in proptest::collection::vec(0usize..64, 0..8),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                chunks.push(&bytes[start..cut]);
                start = cut;
            }
            prop_assert_eq!(decode_chunks(&chunks), String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn valid_text_in_single_byte_chunks_is_unchanged(text in "\\PC{0,24}") {
            let chunks: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
            prop_assert_eq!(decode_chunks(&chunks), text);
        }
    }
}
