//! Incremental UTF-8 decoding for the screen: characters split across receives come out whole,
//! invalid bytes come out as U+FFFD. The echoed bytes are never touched by this.

/// Decodes a byte stream that arrives in arbitrary chunks.
///
/// Like `String::from_utf8_lossy` over the whole stream: each maximal invalid subsequence
/// becomes one [`char::REPLACEMENT_CHARACTER`], and a sequence cut at the end of a chunk waits
/// (at most 3 bytes) for the next one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Utf8Decoder {
    partial: [u8; 4],
    len: u8,
}

impl Utf8Decoder {
    /// A decoder at the start of a stream.
    pub const fn new() -> Self {
        Utf8Decoder {
            partial: [0; 4],
            len: 0,
        }
    }

    /// Whether bytes of an unfinished character are waiting for the next chunk.
    pub fn has_partial(&self) -> bool {
        self.len > 0
    }

    /// Decodes `bytes`, calling `emit` for every complete or replacement character.
    pub fn decode(&mut self, bytes: &[u8], mut emit: impl FnMut(char)) {
        self.decode_into(bytes, &mut emit);
    }

    fn decode_into(&mut self, mut bytes: &[u8], emit: &mut dyn FnMut(char)) {
        // Finish a character left over from the previous chunk, one byte at a time.
        while self.len > 0 && !bytes.is_empty() {
            self.partial[self.len as usize] = bytes[0];
            self.len += 1;
            bytes = &bytes[1..];
            match core::str::from_utf8(&self.partial[..self.len as usize]) {
                Ok(text) => {
                    text.chars().for_each(&mut *emit);
                    self.len = 0;
                }
                Err(error) if error.error_len().is_some() => {
                    // The leftover was not a valid start: replace it and look again at the
                    // bytes that did not belong to it.
                    emit(char::REPLACEMENT_CHARACTER);
                    let bad = error.error_len().unwrap_or(1);
                    let rest_len = self.len as usize - bad;
                    let mut rest = [0u8; 4];
                    rest[..rest_len].copy_from_slice(&self.partial[bad..self.len as usize]);
                    self.len = 0;
                    self.decode_into(&rest[..rest_len], emit);
                }
                Err(_) => {} // still incomplete
            }
        }
        loop {
            match core::str::from_utf8(bytes) {
                Ok(text) => {
                    text.chars().for_each(&mut *emit);
                    return;
                }
                Err(error) => {
                    let (valid, after) = bytes.split_at(error.valid_up_to());
                    core::str::from_utf8(valid)
                        .unwrap_or_default()
                        .chars()
                        .for_each(&mut *emit);
                    match error.error_len() {
                        Some(bad) => {
                            emit(char::REPLACEMENT_CHARACTER);
                            bytes = &after[bad..];
                        }
                        None => {
                            // An incomplete character at the end: keep it for the next chunk.
                            self.partial[..after.len()].copy_from_slice(after);
                            self.len = after.len() as u8;
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: an unfinished character becomes one replacement character.
    pub fn finish(&mut self, mut emit: impl FnMut(char)) {
        if self.len > 0 {
            self.len = 0;
            emit(char::REPLACEMENT_CHARACTER);
        }
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
