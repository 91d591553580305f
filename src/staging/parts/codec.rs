//! How CSV parts are compressed. The codec is part of each part's key (`.csv.zst` or `.csv.gz`),
//! so the loaders need no other record of it, and both warehouses read both: PostgreSQL through
//! our own streaming decoders, Redshift through COPY's `ZSTD` or `GZIP` option.
//!
//! zstd is the default: at level 1 it compresses the benchmark's CSV to 54% of its size where gzip
//! level 1 gives 78%, phase 1's per-item hot path runs about 1.6 times as fast with it, and
//! decompressing it costs phase 3 less (see jobs/bench/README.md). gzip stays for stores and
//! tools that only know it.

use flate2::write::GzEncoder;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartCompression {
    #[default]
    Zstd,
    Gzip,
}

impl PartCompression {
    /// The end of a part's key.
    pub fn extension(self) -> &'static str {
        match self {
            PartCompression::Zstd => ".csv.zst",
            PartCompression::Gzip => ".csv.gz",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            PartCompression::Zstd => "application/zstd",
            PartCompression::Gzip => "application/gzip",
        }
    }

    /// The codec of a part, from its key.
    pub fn of_key(key: &str) -> Option<PartCompression> {
        PartCompression::ALL
            .into_iter()
            .find(|c| key.ends_with(c.extension()))
    }

    /// The codec of a part, or an error naming the part and what to do.
    pub fn of_part(key: &str) -> Result<PartCompression, String> {
        PartCompression::of_key(key).ok_or_else(|| {
            format!(
                "part {key} is neither .csv.zst nor .csv.gz; it was not written by this version \
                 of dynamo-etl: run phase 1 for its segment again"
            )
        })
    }

    /// The one codec of a set of parts (Redshift names it once per COPY).
    pub fn of_parts<'k>(
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Result<PartCompression, String> {
        let mut found: Option<(PartCompression, &str)> = None;
        for key in keys {
            let codec = PartCompression::of_part(key)?;
            match found {
                Some((first, first_key)) if first != codec => {
                    return Err(format!(
                        "parts {first_key} ({}) and {key} ({}) differ in compression; \
                         run phase 1 for their segment again",
                        first.name(),
                        codec.name()
                    ))
                }
                Some(_) => {}
                None => found = Some((codec, key)),
            }
        }
        Ok(found.map(|(c, _)| c).unwrap_or_default())
    }

    /// Levels this codec accepts (zstd's negative levels are its fastest).
    pub fn levels(self) -> std::ops::RangeInclusive<i32> {
        match self {
            PartCompression::Zstd => -7..=19,
            PartCompression::Gzip => 0..=9,
        }
    }

    /// Checks a level for this codec, with an error that says what is allowed.
    pub fn check_level(self, level: i32) -> Result<(), String> {
        let range = self.levels();
        if range.contains(&level) {
            Ok(())
        } else {
            Err(format!(
                "compression level {level} is not valid for {}; use {} to {}",
                self.name(),
                range.start(),
                range.end()
            ))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PartCompression::Zstd => "zstd",
            PartCompression::Gzip => "gzip",
        }
    }

    /// Every codec, the default first.
    pub const ALL: [PartCompression; 2] = [PartCompression::Zstd, PartCompression::Gzip];
}

impl std::str::FromStr for PartCompression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        PartCompression::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("{s:?} is not a part compression; use zstd or gzip"))
    }
}

/// A streaming compressor writing into a `Vec` that the caller may drain between writes.
pub enum PartEncoder {
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    Gzip(GzEncoder<Vec<u8>>),
}

impl PartEncoder {
    /// `level` must have passed [`PartCompression::check_level`].
    pub fn new(codec: PartCompression, level: i32, capacity: usize) -> Self {
        let out = Vec::with_capacity(capacity);
        match codec {
            PartCompression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(out, level)
                    .expect("level checked beforehand");
                // Each frame ends with a checksum of its content, so a damaged part fails to
                // decompress instead of loading different values.
                e.include_checksum(true)
                    .expect("the checksum flag is always accepted");
                PartEncoder::Zstd(e)
            }
            PartCompression::Gzip => PartEncoder::Gzip(GzEncoder::new(
                out,
                flate2::Compression::new(level.clamp(0, 9) as u32),
            )),
        }
    }

    pub fn write_all(&mut self, data: &[u8]) {
        match self {
            PartEncoder::Zstd(e) => e.write_all(data),
            PartEncoder::Gzip(e) => e.write_all(data),
        }
        .expect("compressing into a Vec cannot fail")
    }

    /// The compressed bytes produced so far (the caller may take them).
    pub fn output(&mut self) -> &mut Vec<u8> {
        match self {
            PartEncoder::Zstd(e) => e.get_mut(),
            PartEncoder::Gzip(e) => e.get_mut(),
        }
    }

    /// Ends the stream and returns the bytes not yet taken.
    pub fn finish(self) -> Vec<u8> {
        match self {
            PartEncoder::Zstd(e) => e.finish(),
            PartEncoder::Gzip(e) => e.finish(),
        }
        .expect("compressing into a Vec cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::decode::decompress;

    /// Compresses `data` in pieces, draining the output between writes as the part writer does.
    fn compress(codec: PartCompression, data: &[u8]) -> Vec<u8> {
        let mut e = PartEncoder::new(codec, 1, 0);
        let mut out = Vec::new();
        for piece in data.chunks(7919) {
            e.write_all(piece);
            out.append(e.output());
        }
        out.extend(e.finish());
        out
    }

    #[test]
    fn both_codecs_round_trip_with_drained_output() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("\"{i}\",\"row {}\"\n", i % 97).into_bytes())
            .collect();
        let z = compress(PartCompression::Zstd, &data);
        assert_eq!(decompress("p.csv.zst", &z).unwrap(), data);
        let g = compress(PartCompression::Gzip, &data);
        assert_eq!(decompress("p.csv.gz", &g).unwrap(), data);
        assert!(
            decompress("p.csv.gz", &z).is_err(),
            "the key decides the codec"
        );
    }

    #[test]
    fn keys_name_their_codec_and_levels_are_checked() {
        assert_eq!(
            PartCompression::of_key("a/part-00001.csv.zst"),
            Some(PartCompression::Zstd)
        );
        assert_eq!(
            PartCompression::of_key("a/part-00001.csv.gz"),
            Some(PartCompression::Gzip)
        );
        assert_eq!(PartCompression::of_key("a/part-00001.csv"), None);
        assert!(PartCompression::of_part("a/x.csv")
            .unwrap_err()
            .contains("a/x.csv"));
        assert_eq!(
            PartCompression::of_parts(["a.csv.gz", "b.csv.gz"]),
            Ok(PartCompression::Gzip)
        );
        let mixed = PartCompression::of_parts(["a.csv.gz", "b.csv.zst"]).unwrap_err();
        assert!(
            mixed.contains("a.csv.gz (gzip) and b.csv.zst (zstd)"),
            "{mixed}"
        );
        assert!(PartCompression::Gzip.check_level(9).is_ok());
        let err = PartCompression::Gzip.check_level(12).unwrap_err();
        assert!(err.contains("use 0 to 9"), "{err}");
        assert!(PartCompression::Zstd.check_level(-3).is_ok());
        assert!(PartCompression::Zstd.check_level(20).is_err());
    }
}
