//! Finding where a JSON array ends without parsing it.
//!
//! A Scan page's envelope (count, last key, consumed capacity) is read on the scan's task, and
//! its `Items` array only located there: the transform thread parses and validates the items.
//! Locating the array needs its brackets outside strings only, so [`array_end`] classifies
//! 64 bytes at a time (quotes, backslashes, brackets as bit masks; the string regions as the
//! running XOR of the quote bits) and counts the brackets outside strings, which is several times
//! cheaper than letting a JSON parser skip the value byte by byte. Blocks holding a backslash,
//! rare in DynamoDB JSON, are read byte by byte, as is the tail.

/// What the scan carries from one block to the next.
#[derive(Debug, Default, Clone, Copy)]
struct State {
    /// Brackets open (the array's own included).
    depth: u64,
    in_string: bool,
    /// The previous byte was a backslash inside a string.
    escaped: bool,
}

/// The index just past the `]` that closes the array opening at `json[start]` (which must be
/// `[`), or `None` when `json` ends first. Strings are skipped (escapes included), but nothing
/// else is checked: the array's content must be parsed before it is trusted.
pub fn array_end(json: &[u8], start: usize) -> Option<usize> {
    if json.get(start) != Some(&b'[') {
        return None;
    }
    let mut state = State::default();
    let mut at = start;
    while at + 64 <= json.len() {
        let block: &[u8; 64] = json[at..at + 64].try_into().expect("64 bytes");
        if let Some(end) = block_end(block, &mut state) {
            return Some(at + end);
        }
        at += 64;
    }
    bytewise(&json[at..], &mut state).map(|end| at + end)
}

/// One block: where the array ends in it, if it does, with `state` carried on.
fn block_end(block: &[u8; 64], state: &mut State) -> Option<usize> {
    let m = Masks::of(block);
    if m.backslash != 0 || state.escaped {
        return bytewise(block, state);
    }
    // Bit i of `inside`: byte i is within a string (its opening quote included, its closing
    // quote not). Brackets are never quotes, so the boundary bits do not matter to them.
    let mut inside = prefix_xor(m.quote);
    if state.in_string {
        inside = !inside;
    }
    state.in_string = inside >> 63 == 1;
    let open = m.open & !inside;
    let close = m.close & !inside;
    let closes = u64::from(close.count_ones());
    if state.depth > closes {
        // The depth cannot reach zero within this block.
        state.depth = state.depth + u64::from(open.count_ones()) - closes;
        return None;
    }
    let mut brackets = open | close;
    while brackets != 0 {
        let bit = brackets.trailing_zeros() as usize;
        brackets &= brackets - 1;
        if open >> bit & 1 == 1 {
            state.depth += 1;
        } else {
            state.depth -= 1;
            if state.depth == 0 {
                return Some(bit + 1);
            }
        }
    }
    None
}

/// The same scan, one byte at a time.
fn bytewise(bytes: &[u8], state: &mut State) -> Option<usize> {
    for (i, &b) in bytes.iter().enumerate() {
        if state.in_string {
            if state.escaped {
                state.escaped = false;
            } else if b == b'\\' {
                state.escaped = true;
            } else if b == b'"' {
                state.in_string = false;
            }
            continue;
        }
        match b {
            b'"' => state.in_string = true,
            b'[' => state.depth += 1,
            b']' => {
                state.depth = state.depth.saturating_sub(1);
                if state.depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Bit i of each mask: byte i of the block is that character.
struct Masks {
    quote: u64,
    backslash: u64,
    open: u64,
    close: u64,
}

impl Masks {
    #[cfg(target_arch = "x86_64")]
    fn of(block: &[u8; 64]) -> Masks {
        use std::arch::x86_64::*;
        // SSE2 is part of every x86_64 processor, so these need no detection.
        // SAFETY: each load reads 16 of the block's 64 bytes (unaligned loads are allowed).
        unsafe {
            let mask_of = |c: u8| {
                let wanted = _mm_set1_epi8(c as i8);
                let mut bits = 0u64;
                for k in 0..4 {
                    let v = _mm_loadu_si128(block.as_ptr().add(16 * k) as *const __m128i);
                    let hits = _mm_movemask_epi8(_mm_cmpeq_epi8(v, wanted)) as u32 as u64;
                    bits |= hits << (16 * k);
                }
                bits
            };
            Masks {
                quote: mask_of(b'"'),
                backslash: mask_of(b'\\'),
                open: mask_of(b'['),
                close: mask_of(b']'),
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn of(block: &[u8; 64]) -> Masks {
        let mask_of = |c: u8| {
            block
                .iter()
                .enumerate()
                .fold(0u64, |m, (i, &b)| m | (u64::from(b == c) << i))
        };
        Masks {
            quote: mask_of(b'"'),
            backslash: mask_of(b'\\'),
            open: mask_of(b'['),
            close: mask_of(b']'),
        }
    }
}

/// Bit i: the XOR of bits 0..=i of `x`.
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    /// Where serde_json says the array starting at `start` ends.
    fn serde_end(json: &[u8], start: usize) -> usize {
        let mut stream =
            serde_json::Deserializer::from_slice(&json[start..]).into_iter::<&RawValue>();
        stream.next().expect("a value").expect("valid JSON");
        start + stream.byte_offset()
    }

    #[test]
    fn prefix_xor_marks_what_lies_between_quotes() {
        assert_eq!(prefix_xor(0b1001), 0b0111);
        assert_eq!(prefix_xor(1 << 63), 1 << 63);
        assert_eq!(prefix_xor(0), 0);
        assert_eq!(prefix_xor(0b11), 0b01);
    }

    #[test]
    fn finds_the_end_of_hand_made_arrays() {
        for json in [
            r#"[]"#,
            r#"[1,[2,[3]],"]"]"#,
            r#"["[", "\"]", "\\", "\\\"]\\"]"#,
            r#"[{"S":"a]]]]"},{"L":[{"N":"1"},{"S":"[[["}]}] trailing"#,
        ] {
            let bytes = json.as_bytes();
            assert_eq!(array_end(bytes, 0), Some(serde_end(bytes, 0)), "{json}");
        }
        assert_eq!(array_end(b"[1,2", 0), None);
        assert_eq!(array_end(b"{}", 0), None);
        assert_eq!(array_end(br#"["]"#, 0), None);
    }

    /// Arrays of strings made of the characters that matter (quotes, backslashes, brackets,
    /// multi-byte UTF-8), nested at random and placed at every offset, so that every state
    /// crosses a block boundary: the end found is serde_json's.
    #[test]
    fn agrees_with_serde_json_across_block_boundaries() {
        let alphabet = ['"', '\\', '[', ']', '{', 'a', 'é', ' ', '/'];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for round in 0..3000 {
            let mut values = Vec::new();
            for _ in 0..1 + next(12) {
                let len = next(150);
                let s: String = (0..len).map(|_| alphabet[next(alphabet.len())]).collect();
                values.push(match next(3) {
                    0 => serde_json::json!(s),
                    1 => serde_json::json!([s, [s.len()], {"S": s}]),
                    _ => serde_json::json!({"L": [{"S": s}, []]}),
                });
            }
            let array = serde_json::to_string(&values).unwrap();
            let pad = " ".repeat(round % 130);
            let json = format!("{pad}{array}, \"]\"]");
            let start = pad.len();
            assert_eq!(
                array_end(json.as_bytes(), start),
                Some(serde_end(json.as_bytes(), start)),
                "round {round}: {json}"
            );
            // Cut anywhere inside, the array has no end.
            let cut = start + next(array.len());
            assert_eq!(array_end(&json.as_bytes()[..cut], start), None, "{round}");
        }
    }
}
