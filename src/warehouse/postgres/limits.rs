//! What PostgreSQL holds, from its documentation (pages under
//! <https://www.postgresql.org/docs/15/>). Phase 1 of a run planned for PostgreSQL shapes every
//! value by these.
//!
//! | limit | figure | page |
//! |---|---|---|
//! | `text` | any length up to the 1 GB field size | `datatype-character.html`, `limits.html` |
//! | `numeric(p, s)` | precision up to 1,000, scale up to 1,000; DynamoDB numbers have at most 38 digits | `datatype-numeric.html` |
//! | `bytea` | up to 1 GB; input in hex format `\x…` | `datatype-binary.html`, `limits.html` |
//! | `jsonb` | no documented size below the field size; cannot hold U+0000 in a string (tagged instead, see `value::json`) | `datatype-json.html` |
//! | columns per table | 1,600, and a row must fit one 8,192-byte heap page; a value moved out of line still leaves a pointer in the row (18 bytes) | `limits.html`, `storage-toast.html` |
//! | identifiers | 63 bytes | `limits.html`, `sql-syntax-lexical.html` |
//! | `timestamptz` | 4713 BC to 294276 AD, microseconds; offsets up to ±15:59 | `datatype-datetime.html` |
//!
//! Timestamps are sent in UTC with a `Z`, so a valid RFC 3339 offset such as `+16:00` (outside
//! PostgreSQL's range) never reaches COPY.

use crate::schema::limits::{BinaryText, DialectName, Digested, Limits};

pub const LIMITS: Limits = Limits {
    dialect: DialectName::Postgres,
    max_text_bytes: None,
    max_decimal_precision: 38,
    max_decimal_scale: 38,
    widen_precision_19: false,
    max_json_string_bytes: None,
    max_json_bytes: None,
    max_binary_bytes: 1 << 30,
    binary_text: BinaryText::PrefixedHex,
    max_row_bytes: None,
    max_columns: 1600,
    // The row must fit an 8 kB page: 250 columns of at most ~32 bytes each in the row (a short
    // value, a fixed-width one, or the pointer to one stored out of line) stay below it.
    column_cap: 250,
    max_identifier_bytes: 63,
    digested: Digested::AllTypes,
};
