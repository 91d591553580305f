//! What Amazon Redshift holds, from its documentation (pages under
//! <https://docs.aws.amazon.com/redshift/latest/dg/>). Phase 1 of a run planned for Redshift
//! shapes every value by these; what falls outside goes to `_overflow`.
//!
//! | limit | figure | page |
//! |---|---|---|
//! | VARCHAR length | 65,535 bytes | `r_Character_types.html` |
//! | DECIMAL precision / scale | 38 / 37; extra input scale is rounded, not refused | `r_Numeric_types201.html` |
//! | DECIMAL(19, s) | stored in 64 bits: at most 9223372036854775807 whatever the scale, so 19 is declared as 20 | `r_Numeric_types201.html` |
//! | string inside SUPER | 65,535 bytes by default; the 2026-11 database opt-in `enable_large_strings_opt_in` raises it to 16,000,000, not relied on | `limitations-super.html` |
//! | SUPER value from CSV | copies of `r_SUPER_type.html` disagree on whether CSV may carry objects over 1 MB (the en-US page lists Parquet, JSON and text; other copies add CSV), so values are kept under 1,000,000 bytes; SUPER itself holds 16 MB | `r_SUPER_type.html`, `limitations-super.html`, `ingest-super.html` |
//! | number inside SUPER | what COPY makes of a JSON number no DECIMAL holds is undocumented: such numbers are sent as tagged strings (`value::json`) | `r_Numeric_types201.html`, `ingest-super.html` |
//! | VARBYTE | up to 16,777,216 bytes on current versions, 1,024,000 on older ones; the older figure is used | `r_VARBYTE_type.html` |
//! | VARBYTE from CSV | hexadecimal text | `copy-usage-varbyte.html` |
//! | input row | 4 MB | `copy-parameters-data-source-s3.html` |
//! | columns per table | 1,600 | `amazon-redshift-limits.html` (and `r_CREATE_TABLE_NEW.html`) |
//! | identifiers | 127 bytes | `r_names.html` |
//! | TIMESTAMPTZ | 4713 BC to 294276 AD, microseconds | `r_Datetime_types.html` |
//!
//! Timestamps are sent in UTC with a `Z` (the ISO 8601 form `TIMEFORMAT 'auto'` documents, in
//! `r_DATEFORMAT_and_TIMEFORMAT_strings.html`), so no offset is ever parsed by COPY.

use crate::schema::limits::{BinaryText, DialectName, Digested, Limits};

/// Widest VARCHAR, in bytes.
pub const MAX_VARCHAR: u32 = 65535;

/// VARBYTE size declared for binary columns: the limit every Redshift version accepts, above the
/// 400 KB a whole DynamoDB item may have.
pub const VARBYTE_BYTES: u32 = 1_024_000;

pub const LIMITS: Limits = Limits {
    dialect: DialectName::Redshift,
    max_text_bytes: Some(MAX_VARCHAR),
    max_decimal_precision: 38,
    max_decimal_scale: 37,
    widen_precision_19: true,
    max_json_string_bytes: Some(65535),
    max_json_bytes: Some(1_000_000),
    max_binary_bytes: VARBYTE_BYTES,
    binary_text: BinaryText::Hex,
    max_row_bytes: Some(4 * 1024 * 1024),
    max_columns: 1600,
    // Far below 1,600: room to widen a table later without meeting the limit on a busy night.
    column_cap: 1000,
    max_identifier_bytes: 127,
    // Only a boolean's rendering is pinned down by functions the documentation specifies
    // exactly (`Redshift::value_hash_sql` says why the others are not).
    digested: Digested::BooleansOnly,
};
