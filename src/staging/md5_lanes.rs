//! MD5 of many messages at once, for the fingerprints: phase 1 hashes many short values and
//! rows, independent of each other, so sixteen messages of the same number of 64-byte blocks
//! are hashed side by side, one per 32-bit lane, which the compiler turns into vector
//! instructions where the CPU has them (AVX-512 or AVX2, detected at run time; the same code
//! runs portably elsewhere). Long messages, and a message with no partner, go through the
//! `md-5` crate. The algorithm is RFC 1321's (<https://www.rfc-editor.org/rfc/rfc1321>); the
//! tests compare every length against `md-5`.

use md5::{Digest as _, Md5};

/// Messages up to this many bytes fit in one block with their padding.
#[cfg(test)]
const ONE_BLOCK: usize = 55;
const LANES: usize = 32;

/// Per step: the additive constant (RFC 1321, 3.4: `floor(abs(sin(i + 1)) * 2^32)`).
const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

/// Per round, the left rotations of its four steps, repeated.
const S: [[u32; 4]; 4] = [
    [7, 12, 17, 22],
    [5, 9, 14, 20],
    [4, 11, 16, 23],
    [6, 10, 15, 21],
];

const INIT: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

type Lanes = [u32; LANES];

/// The message word step `i` reads (RFC 1321, 3.4).
const fn word(i: usize) -> usize {
    match i / 16 {
        0 => i,
        1 => (5 * i + 1) % 16,
        2 => (3 * i + 5) % 16,
        _ => (7 * i) % 16,
    }
}

/// One step of every lane: `a = b + rotl(a + f(b, c, d) + k + m, s)`, then the words rotate.
#[inline(always)]
fn step(v: &mut [Lanes; 4], m: &Lanes, k: u32, s: u32, f: impl Fn(u32, u32, u32) -> u32) {
    let [a, b, c, d] = *v;
    let mut next = [0u32; LANES];
    for l in 0..LANES {
        let sum = a[l]
            .wrapping_add(f(b[l], c[l], d[l]))
            .wrapping_add(k)
            .wrapping_add(m[l]);
        next[l] = b[l].wrapping_add(sum.rotate_left(s));
    }
    *v = [d, next, b, c];
}

/// One MD5 block for eight messages: `w[j][lane]` is word `j` of lane's block, `state` each
/// lane's state before it. Returns the state after the block.
#[inline(always)]
fn compress(state: &[Lanes; 4], w: &[Lanes; 16]) -> [Lanes; 4] {
    let mut v = *state;
    for i in 0..16 {
        step(&mut v, &w[word(i)], K[i], S[0][i % 4], |b, c, d| {
            (b & c) | (!b & d)
        });
    }
    for i in 16..32 {
        step(&mut v, &w[word(i)], K[i], S[1][i % 4], |b, c, d| {
            (b & d) | (c & !d)
        });
    }
    for i in 32..48 {
        step(&mut v, &w[word(i)], K[i], S[2][i % 4], |b, c, d| b ^ c ^ d);
    }
    for i in 48..64 {
        step(&mut v, &w[word(i)], K[i], S[3][i % 4], |b, c, d| {
            c ^ (b | !d)
        });
    }
    for (after, before) in v.iter_mut().zip(state) {
        for (x, y) in after.iter_mut().zip(before) {
            *x = x.wrapping_add(*y);
        }
    }
    v
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn compress_avx512(state: &[Lanes; 4], w: &[Lanes; 16]) -> [Lanes; 4] {
    compress(state, w)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn compress_avx2(state: &[Lanes; 4], w: &[Lanes; 16]) -> [Lanes; 4] {
    compress(state, w)
}

fn compress_any(state: &[Lanes; 4], w: &[Lanes; 16]) -> [Lanes; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { compress_avx512(state, w) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { compress_avx2(state, w) };
        }
    }
    compress(state, w)
}

/// The first 60 bits of the MD5 of `bytes`, read as a number (its first 15 hex digits).
pub fn hash60(bytes: &[u8]) -> u64 {
    let sum = Md5::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&sum[..8]);
    u64::from_be_bytes(first) >> 4
}

/// Messages of up to this many blocks are hashed in lanes; longer ones one at a time.
const MAX_LANE_BLOCKS: usize = 8;

/// The blocks `len` bytes take with their padding.
fn blocks(len: usize) -> usize {
    (len + 8) / 64 + 1
}

/// Hashes many messages, several at once: messages of equal block counts share a pass.
#[derive(Debug, Clone, Default)]
pub struct ManyHasher {
    /// Per block count, the indices of the messages of that many blocks.
    by_blocks: [Vec<usize>; MAX_LANE_BLOCKS + 1],
}

impl ManyHasher {
    #[cfg(test)]
    /// [`hash60`] of each of `messages` into `out` (cleared first), in order.
    pub fn hash60_many(&mut self, messages: &[&[u8]], out: &mut Vec<u64>) {
        self.hash60_each(messages.len(), |i| (messages[i], messages[i].len()), out);
    }

    /// [`hash60`] of `count` messages into `out` (cleared first), in order: `message(i)` gives
    /// the bytes from message `i`'s start (more may follow) and its length. For callers whose
    /// messages are ranges of one buffer.
    pub fn hash60_each<'m>(
        &mut self,
        count: usize,
        message: impl Fn(usize) -> (&'m [u8], usize),
        out: &mut Vec<u64>,
    ) {
        out.clear();
        out.resize(count, 0);
        for (index, hash) in out.iter_mut().enumerate() {
            let (bytes, len) = message(index);
            match blocks(len) {
                n if n <= MAX_LANE_BLOCKS => self.by_blocks[n].push(index),
                _ => *hash = hash60(&bytes[..len]),
            }
        }
        for (n, indices) in self.by_blocks.iter_mut().enumerate() {
            for batch in indices.chunks(LANES) {
                if let [index] = batch {
                    // One message alone costs a whole vector pass: the scalar path is as quick.
                    let (bytes, len) = message(*index);
                    out[*index] = hash60(&bytes[..len]);
                    continue;
                }
                let mut state = [
                    [INIT[0]; LANES],
                    [INIT[1]; LANES],
                    [INIT[2]; LANES],
                    [INIT[3]; LANES],
                ];
                let mut w = [[0u32; LANES]; 16];
                for b in 0..n {
                    for (lane, &index) in batch.iter().enumerate() {
                        let (bytes, len) = message(index);
                        load(&mut w, lane, bytes, len, b);
                    }
                    state = compress_any(&state, &w);
                }
                for (lane, &index) in batch.iter().enumerate() {
                    out[index] = first60(state[0][lane], state[1][lane]);
                }
            }
            indices.clear();
        }
    }
}

/// Writes block `b` of the message `bytes[..len]`, padded (RFC 1321, 3.1–3.2: a `0x80` byte,
/// zeros to 56 bytes modulo 64, the length in bits as 8 little-endian bytes), into lane `lane`
/// of `w`. A block the message fills is read from it in place; only the last one or two are
/// assembled.
#[inline]
fn load(w: &mut [Lanes; 16], lane: usize, bytes: &[u8], len: usize, b: usize) {
    let message = &bytes[..len];
    let start = b * 64;
    if let Some(full) = message.get(start..start + 64) {
        for (j, chunk) in full.chunks_exact(4).enumerate() {
            w[j][lane] = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        return;
    }
    let mut block = [0u8; 64];
    let rest = message.get(start..).unwrap_or_default();
    block[..rest.len()].copy_from_slice(rest);
    if message.len() >= start {
        block[rest.len()] = 0x80;
    }
    if b + 1 == blocks(message.len()) {
        block[56..].copy_from_slice(&((message.len() as u64) * 8).to_le_bytes());
    }
    for (j, chunk) in block.chunks_exact(4).enumerate() {
        w[j][lane] = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
}

/// The first 60 bits of a digest whose first two state words are `a` and `b` (the digest is the
/// state words' little-endian bytes, RFC 1321, 3.5).
fn first60(a: u32, b: u32) -> u64 {
    let mut first = [0u8; 8];
    first[..4].copy_from_slice(&a.to_le_bytes());
    first[4..].copy_from_slice(&b.to_le_bytes());
    u64::from_be_bytes(first) >> 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages() -> Vec<Vec<u8>> {
        // Every length around the one-block limit and past it, with varied bytes.
        (0..=130usize)
            .map(|n| (0..n).map(|i| (i * 31 + n * 7) as u8).collect())
            .collect()
    }

    #[test]
    fn lanes_give_the_same_hash_as_one_message_at_a_time_for_every_length() {
        let messages = messages();
        let mut out = Vec::new();
        let mut hasher = ManyHasher::default();
        // Batches of every size, so that full and partial batches are both exercised.
        for take in 1..=messages.len() {
            let some: Vec<&[u8]> = messages[..take].iter().map(Vec::as_slice).collect();
            hasher.hash60_many(&some, &mut out);
            let want: Vec<u64> = some.iter().map(|m| hash60(m)).collect();
            assert_eq!(out, want, "{take} messages");
        }
        // Longer than lanes take, mixed with short ones.
        let long = vec![7u8; 64 * MAX_LANE_BLOCKS + 3];
        let mixed: Vec<&[u8]> = vec![&long, b"a", &long[..300], b"b", b"", &long[..301]];
        hasher.hash60_many(&mixed, &mut out);
        let want: Vec<u64> = mixed.iter().map(|m| hash60(m)).collect();
        assert_eq!(out, want);
        // Messages as ranges of one buffer, as the fingerprinter hashes them (the bytes past
        // each message are not part of its hash).
        let mut buffer: Vec<u8> = messages.concat();
        let mut starts = vec![0];
        for m in &messages {
            starts.push(starts.last().unwrap() + m.len());
        }
        buffer.extend_from_slice(&[0xa5; 64]);
        hasher.hash60_each(
            messages.len(),
            |i| (&buffer[starts[i]..], messages[i].len()),
            &mut out,
        );
        let want: Vec<u64> = messages.iter().map(|m| hash60(m)).collect();
        assert_eq!(out, want, "ranges of one buffer");
        // RFC 1321, A.5: MD5("abc") = 900150983cd24fb0d6963f7d28e17f72.
        hasher.hash60_many(&[&b"abc"[..]; 9], &mut out);
        assert!(out.iter().all(|&h| h == 0x900150983cd24fb), "{out:x?}");
    }

    #[test]
    fn the_portable_path_agrees_with_the_vector_one() {
        let messages = messages();
        let init = [
            [INIT[0]; LANES],
            [INIT[1]; LANES],
            [INIT[2]; LANES],
            [INIT[3]; LANES],
        ];
        let mut w = [[0u32; LANES]; 16];
        for chunk in messages[..=ONE_BLOCK].chunks(LANES) {
            for (lane, m) in chunk.iter().enumerate() {
                load(&mut w, lane, m, m.len(), 0);
            }
            let v = compress(&init, &w);
            for (lane, m) in chunk.iter().enumerate() {
                assert_eq!(
                    first60(v[0][lane], v[1][lane]),
                    hash60(m),
                    "{} bytes",
                    m.len()
                );
            }
        }
    }
}
