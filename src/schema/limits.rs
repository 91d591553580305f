//! What a warehouse can hold, as the data side needs to know it: the shape of the limits every
//! dialect states in its own folder (`warehouse::postgres::limits`, `warehouse::redshift::limits`),
//! and the two decisions made from them — which column type a logical type gets in a run
//! ([`Limits::fit_schema`], applied once when the run is planned) and whether a value may be
//! sent at all (phase 1 consults the same [`Limits`] value by value).
//!
//! A value outside the limits is never truncated, rounded or left to fail a COPY: it is written
//! to the run's [`OVERFLOW_TABLE`] as bytes, keyed by the table, the item's key and the attribute.

use serde::{Deserialize, Serialize};

use super::{Column, DataSchema, LogicalType, FORMAT_VERSION};

/// Which warehouse a run is shaped for. The plan records it: phase 1 writes binary, long strings
/// and nested values the way that warehouse loads them, so a run's parts load into it only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DialectName {
    Postgres,
    Redshift,
}

impl DialectName {
    pub const ALL: [DialectName; 2] = [DialectName::Postgres, DialectName::Redshift];

    pub fn name(self) -> &'static str {
        match self {
            DialectName::Postgres => "postgres",
            DialectName::Redshift => "redshift",
        }
    }
}

impl std::fmt::Display for DialectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DialectName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DialectName::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| format!("{s:?} is not a dialect; use postgres or redshift"))
    }
}

/// How a binary value is spelled in a CSV field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryText {
    /// `\x` then lowercase hex digits (PostgreSQL's `bytea` hex input format).
    PrefixedHex,
    /// Hex digits only (Redshift loads `VARBYTE` from CSV as hex).
    Hex,
}

impl BinaryText {
    /// Appends the CSV text of `bytes`.
    pub fn write(self, bytes: &[u8], out: &mut String) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        out.reserve(bytes.len() * 2 + 2);
        if self == BinaryText::PrefixedHex {
            out.push_str("\\x");
        }
        for b in bytes {
            out.push(DIGITS[usize::from(b >> 4)] as char);
            out.push(DIGITS[usize::from(b & 0xf)] as char);
        }
    }

    pub fn encode(self, bytes: &[u8]) -> String {
        let mut out = String::new();
        self.write(bytes, &mut out);
        out
    }
}

/// One warehouse's documented limits, and the caps this tool keeps below them. Each dialect
/// defines one constant of this type, with the documentation page of every figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub dialect: DialectName,
    /// Longest value of a text column, in UTF-8 bytes (`None`: any string an item can hold).
    pub max_text_bytes: Option<u32>,
    /// Most digits of a DECIMAL column.
    pub max_decimal_precision: u32,
    /// Most digits after the point of a DECIMAL column.
    pub max_decimal_scale: u32,
    /// Whether a precision of 19 digits must be declared as 20: a 19-digit DECIMAL is stored in
    /// 64 bits and holds only up to 9223372036854775807.
    pub widen_precision_19: bool,
    /// Longest string (or object key) inside a JSON value, in bytes after JSON unescaping.
    pub max_json_string_bytes: Option<u32>,
    /// Largest JSON value in one CSV field, in bytes of JSON text.
    pub max_json_bytes: Option<u32>,
    /// Largest binary value of a binary column.
    pub max_binary_bytes: u32,
    /// How binary values are written in the CSV.
    pub binary_text: BinaryText,
    /// Largest CSV row (all fields with their quoting), in bytes.
    pub max_row_bytes: Option<u32>,
    /// Columns a table may have, as documented.
    pub max_columns: u32,
    /// Columns this tool gives a data-schema table at most, `_extra` included, chosen well below
    /// [`Limits::max_columns`]; attributes past the cap are kept in `_extra`.
    pub column_cap: u32,
    /// Longest identifier, in bytes.
    pub max_identifier_bytes: u32,
    /// Which columns' values the warehouse's own SQL can render exactly as phase 1's
    /// fingerprints do (`staging::fingerprint`): phase 1 digests those only, and the others are
    /// checked by their counts.
    pub digested: Digested,
}

/// The logical types whose stored values a dialect renders, by functions its documentation pins
/// down, exactly as phase 1's fingerprints do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digested {
    /// Every logical type.
    AllTypes,
    /// Booleans only: every other column is checked by its counts.
    BooleansOnly,
}

impl Digested {
    pub fn covers(self, t: LogicalType) -> bool {
        match self {
            Digested::AllTypes => true,
            Digested::BooleansOnly => t == LogicalType::Boolean,
        }
    }
}

/// The table of each run that receives values no column can hold (see the module doc).
pub const OVERFLOW_TABLE: &str = "_overflow";

/// What stands for SQL NULL in the CSV parts both warehouses load (unquoted; every value is
/// quoted, see `staging::parts::csv`). A string that is exactly this text is still a value, so the
/// transform keeps it in `_extra` rather than let a warehouse read it as NULL.
pub const NULL_MARKER: &str = "\\N";

/// Largest piece of one overflowing value per `_overflow` row: well under the smallest binary
/// column size a dialect allows, and small enough that a row (hex doubles it) stays far below
/// every row limit.
pub const OVERFLOW_CHUNK_BYTES: usize = 256 * 1024;

/// What an `_overflow` row's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowKind {
    /// The UTF-8 bytes of a DynamoDB string.
    String,
    /// The bytes of a DynamoDB binary value.
    Binary,
    /// The tagged JSON text (see `value::json`) of any other value (a string holding U+0000
    /// included, as its `$s64` tag).
    Json,
}

impl OverflowKind {
    pub fn name(self) -> &'static str {
        match self {
            OverflowKind::String => "S",
            OverflowKind::Binary => "B",
            OverflowKind::Json => "json",
        }
    }
}

/// The data-schema of `_overflow`: one row per piece of a value no column of its table can hold,
/// named by the table, the item's key (as JSON, like `_unclassified`'s), the attribute and the
/// piece's index. Concatenating an attribute's pieces in `chunk` order gives its bytes. It has no
/// `_extra` column.
pub fn overflow_schema(source_table: &str) -> DataSchema {
    let column = |name: &str, logical_type| Column {
        attribute: name.to_string(),
        column: name.to_string(),
        logical_type,
        nullable: false,
    };
    DataSchema {
        format: FORMAT_VERSION,
        source_table: source_table.to_string(),
        table: OVERFLOW_TABLE.to_string(),
        rule: None,
        columns: vec![
            column("table_name", LogicalType::Text { max_bytes: 127 }),
            column("item_key", LogicalType::Text { max_bytes: 65535 }),
            column("attribute", LogicalType::Text { max_bytes: 65535 }),
            column("chunk", LogicalType::Bigint),
            column("kind", LogicalType::Text { max_bytes: 4 }),
            column("value", LogicalType::Binary),
        ],
    }
}

impl Limits {
    /// The type a column of logical type `t` gets in this warehouse: the same, or a wider one
    /// that holds every value `t` stands for exactly.
    pub fn fit_type(&self, t: LogicalType) -> LogicalType {
        match t {
            LogicalType::Decimal { scale, .. } if scale > self.max_decimal_scale => {
                LogicalType::NumericText
            }
            LogicalType::Decimal {
                precision: 19,
                scale,
            } if self.widen_precision_19 => self.fit_type(LogicalType::Decimal {
                precision: 20,
                scale,
            }),
            LogicalType::Decimal { precision, .. } if precision > self.max_decimal_precision => {
                LogicalType::NumericText
            }
            other => other,
        }
    }

    /// `schema` as a run for this warehouse uses it: every type fitted, and the columns past
    /// [`Limits::column_cap`] left out (their attributes land in `_extra`, counted as drift).
    /// Returns the fitted schema and how many columns were left out.
    pub fn fit_schema(&self, schema: &DataSchema) -> (DataSchema, usize) {
        let keep = (self.column_cap as usize).saturating_sub(1);
        let dropped = schema.columns.len().saturating_sub(keep);
        let columns = schema
            .columns
            .iter()
            .take(keep)
            .map(|c| Column {
                logical_type: self.fit_type(c.logical_type),
                ..c.clone()
            })
            .collect();
        (
            DataSchema {
                columns,
                ..schema.clone()
            },
            dropped,
        )
    }

    /// Whether a string of `len` bytes fits a text column.
    pub fn text_fits(&self, len: usize) -> bool {
        self.max_text_bytes.is_none_or(|max| len <= max as usize)
    }

    /// Whether a JSON text of `len` bytes whose longest string has `longest_string` bytes fits a
    /// JSON column.
    pub fn json_fits(&self, len: usize, longest_string: usize) -> bool {
        self.max_json_bytes.is_none_or(|max| len <= max as usize)
            && self
                .max_json_string_bytes
                .is_none_or(|max| longest_string <= max as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: Limits = Limits {
        dialect: DialectName::Redshift,
        max_text_bytes: Some(100),
        max_decimal_precision: 38,
        max_decimal_scale: 37,
        widen_precision_19: true,
        max_json_string_bytes: Some(10),
        max_json_bytes: Some(50),
        max_binary_bytes: 1000,
        binary_text: BinaryText::Hex,
        max_row_bytes: Some(4000),
        max_columns: 1600,
        column_cap: 3,
        max_identifier_bytes: 127,
        digested: Digested::BooleansOnly,
    };

    fn decimal(precision: u32, scale: u32) -> LogicalType {
        LogicalType::Decimal { precision, scale }
    }

    #[test]
    fn decimals_are_widened_or_kept_as_text_where_the_warehouse_needs_it() {
        assert_eq!(STRICT.fit_type(decimal(19, 0)), decimal(20, 0));
        assert_eq!(STRICT.fit_type(decimal(19, 4)), decimal(20, 4));
        assert_eq!(STRICT.fit_type(decimal(18, 2)), decimal(18, 2));
        assert_eq!(STRICT.fit_type(decimal(38, 38)), LogicalType::NumericText);
        assert_eq!(STRICT.fit_type(decimal(38, 37)), decimal(38, 37));
        let lenient = Limits {
            widen_precision_19: false,
            max_decimal_scale: 38,
            ..STRICT
        };
        assert_eq!(lenient.fit_type(decimal(19, 0)), decimal(19, 0));
        assert_eq!(lenient.fit_type(decimal(38, 38)), decimal(38, 38));
    }

    #[test]
    fn columns_past_the_cap_are_left_to_extra() {
        let mut schema = overflow_schema("t");
        schema.table = "wide".into();
        let (fitted, dropped) = STRICT.fit_schema(&schema);
        // A cap of 3 leaves room for two columns and `_extra`.
        assert_eq!(fitted.columns.len(), 2);
        assert_eq!(dropped, schema.columns.len() - 2);
        assert_eq!(fitted.columns[..], schema.columns[..2]);
    }

    #[test]
    fn binary_is_spelled_as_each_warehouse_reads_it() {
        assert_eq!(
            BinaryText::PrefixedHex.encode(&[0x00, 0xff, 0x1a]),
            "\\x00ff1a"
        );
        assert_eq!(BinaryText::Hex.encode(&[0x00, 0xff, 0x1a]), "00ff1a");
        assert_eq!(BinaryText::Hex.encode(&[]), "");
    }

    #[test]
    fn dialect_names_round_trip() {
        for d in DialectName::ALL {
            assert_eq!(d.name().parse::<DialectName>(), Ok(d));
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{d}\""));
        }
        assert!("mysql".parse::<DialectName>().is_err());
    }
}
