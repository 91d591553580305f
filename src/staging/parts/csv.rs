//! The CSV dialect of the parts: RFC 4180, UTF-8, `,` between fields, `\n` after each row, no
//! header. Every non-NULL field is quoted; NULL is the unquoted marker `\N`.
//!
//! Why not the empty unquoted field for NULL: Redshift cannot keep an empty VARCHAR apart from
//! NULL that way (without EMPTYASNULL `,,` loads as `''`; with it `""` may load as NULL too), while
//! an unquoted `\N` is read as NULL by both warehouses (`NULL '\N'` / `NULL AS '\\N'`) and a
//! quoted value never is. Quoting everything also stops PostgreSQL from reading a lone `\.` as the
//! end of data. Quoting itself is done by `csv_core`.

use csv_core::{QuoteStyle, Terminator, WriteResult, Writer, WriterBuilder};

pub use crate::schema::limits::NULL_MARKER;

/// Encodes rows into CSV bytes.
pub struct CsvEncoder {
    writer: Writer,
}

impl Default for CsvEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl CsvEncoder {
    pub fn new() -> Self {
        CsvEncoder {
            writer: WriterBuilder::new()
                .quote_style(QuoteStyle::Always)
                .terminator(Terminator::Any(b'\n'))
                .build(),
        }
    }

    /// Appends one row to `out`.
    pub fn write_row<S: AsRef<str>>(&mut self, out: &mut Vec<u8>, fields: &[Option<S>]) {
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                self.emit(out, 2, |w, buf| w.delimiter(buf));
            }
            match field {
                None => out.extend_from_slice(NULL_MARKER.as_bytes()),
                Some(text) => {
                    let input = text.as_ref().as_bytes();
                    let start = out.len();
                    // Worst case: every byte a quote (doubled) plus the opening quote.
                    out.resize(start + 2 * input.len() + 1, 0);
                    let (result, read, written) = self.writer.field(input, &mut out[start..]);
                    debug_assert!(matches!(result, WriteResult::InputEmpty) && read == input.len());
                    out.truncate(start + written);
                }
            }
        }
        self.emit(out, 3, |w, buf| w.terminator(buf));
    }

    fn emit(
        &mut self,
        out: &mut Vec<u8>,
        room: usize,
        step: impl FnOnce(&mut Writer, &mut [u8]) -> (WriteResult, usize),
    ) {
        let start = out.len();
        out.resize(start + room, 0);
        let (result, written) = step(&mut self.writer, &mut out[start..]);
        debug_assert!(matches!(result, WriteResult::InputEmpty));
        out.truncate(start + written);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::decode::decode_rows;

    fn encode(rows: &[Vec<Option<&str>>]) -> Vec<u8> {
        let mut enc = CsvEncoder::new();
        let mut out = Vec::new();
        for r in rows {
            enc.write_row(&mut out, r);
        }
        out
    }

    #[test]
    fn null_and_empty_string_differ() {
        let out = encode(&[vec![None, Some(""), Some("x"), Some("\\N")]]);
        assert_eq!(out, b"\\N,\"\",\"x\",\"\\N\"\n");
        assert_eq!(
            decode_rows(&out).unwrap(),
            vec![vec![
                None,
                Some(String::new()),
                Some("x".into()),
                Some("\\N".into())
            ]]
        );
    }

    #[test]
    fn awkward_strings_round_trip() {
        let rows = vec![
            vec![
                Some("a,b"),
                Some("say \"hi\""),
                Some("line\nbreak\r\n"),
                None,
            ],
            vec![
                Some("\\."),
                Some("back\\slash"),
                Some("ünïcødé ✓"),
                Some(""),
            ],
            vec![None, None, None, None],
            vec![Some("\\.\n"), Some("\n\\.\n"), Some(" "), Some("\t")],
        ];
        let out = encode(&rows);
        let back = decode_rows(&out).unwrap();
        let expected: Vec<Vec<Option<String>>> = rows
            .iter()
            .map(|r| r.iter().map(|f| f.map(str::to_string)).collect())
            .collect();
        assert_eq!(back, expected);
    }

    #[test]
    fn long_fields_round_trip() {
        let long = "\"x".repeat(100_000);
        let out = encode(&[vec![Some(long.as_str()), None]]);
        let back = decode_rows(&out).unwrap();
        assert_eq!(back, vec![vec![Some(long), None]]);
    }
}
