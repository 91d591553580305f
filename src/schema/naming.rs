//! The deterministic mapping from DynamoDB attribute names (any UTF-8) to warehouse identifiers.
//!
//! Rules, applied in order (documented in schemas/README.md, "Column names"):
//! 1. ASCII letters are lowercased, ASCII digits and `_` kept, every other character becomes `_`.
//! 2. An empty result, or one starting with a digit, gets the prefix `c_`.
//! 3. System column names of PostgreSQL and Redshift (`oid`, `xmin`, `ctid`, …) and our metadata
//!    column names (`_extra`) get a trailing `_`.
//! 4. Names longer than [`MAX_IDENTIFIER_BYTES`] (PostgreSQL's 63; Redshift allows 127, so one
//!    mapping serves both) keep their first 54 bytes plus `_` and 8 hex digits of a hash of the
//!    original attribute name.
//!
//!    Why 63 for both dialects: PostgreSQL does not reject a longer identifier, it silently cuts it
//!    to 63 bytes, so two long attribute names could quietly become the same column. Using the
//!    smaller limit everywhere keeps one data-schema valid on both warehouses, and the local
//!    PostgreSQL tests exercise exactly the column names production Redshift gets.
//! 5. A name already taken in the table gets `_2`, `_3`, … (shortened first if needed). Names are
//!    assigned in column order, so existing columns keep theirs when new attributes appear.
//!
//! The result is recorded in the data-schema, so the mapping only matters when a column is created.

use std::collections::HashSet;

/// Longest identifier accepted by both warehouses (PostgreSQL: 63 bytes; Redshift: 127).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Column names that cannot be used even when quoted: system columns of PostgreSQL and Redshift,
/// and the metadata columns this tool adds.
const RESERVED: &[&str] = &[
    "oid",
    "tableoid",
    "xmin",
    "xmax",
    "cmin",
    "cmax",
    "ctid",
    "deletexid",
    "insertxid",
    "_extra",
];

pub fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name)
}

/// True for names made only of `[a-z0-9_]`, not starting with a digit, 1 to 63 bytes long.
pub fn is_safe_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IDENTIFIER_BYTES
        && !name.as_bytes()[0].is_ascii_digit()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Steps 1–4: the preferred identifier for one name, before collisions are resolved.
pub fn base_identifier(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.as_bytes()[0].is_ascii_digit() {
        out.insert_str(0, "c_");
    }
    if is_reserved(&out) {
        out.push('_');
    }
    if out.len() > MAX_IDENTIFIER_BYTES {
        out.truncate(MAX_IDENTIFIER_BYTES - 9);
        out.push_str(&format!("_{:08x}", fnv1a(name.as_bytes())));
    }
    out
}

/// Assigns identifiers to names in order, keeping every identifier unique among `taken` (which
/// should start with the names already in use) and recording each new one there.
pub fn assign(name: &str, taken: &mut HashSet<String>) -> String {
    let base = base_identifier(name);
    let mut candidate = base.clone();
    let mut n = 2u32;
    while taken.contains(&candidate) || is_reserved(&candidate) {
        let suffix = format!("_{n}");
        let mut stem = base.clone();
        stem.truncate(MAX_IDENTIFIER_BYTES - suffix.len());
        candidate = stem + &suffix;
        n += 1;
    }
    taken.insert(candidate.clone());
    candidate
}

/// The preferred table name of an entity named in the data (a type value such as `UserSettings`,
/// or a key prefix such as `#ORDER#`): words of a camelCase name split by `_`, then steps 1–4,
/// leading, trailing and repeated `_` dropped (so no name from the data can look like the
/// tool's own `_unclassified`, `_overflow` or `_inc_…` tables), and `entity` when nothing is
/// left. Collisions are resolved by [`assign`].
pub fn entity_table_name(entity: &str) -> String {
    let chars: Vec<char> = entity.chars().collect();
    let mut words = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let before = i.checked_sub(1).map(|j| chars[j]);
        let after = chars.get(i + 1).copied();
        let starts_word = c.is_ascii_uppercase()
            && before.is_some_and(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || (b.is_ascii_uppercase() && after.is_some_and(|a| a.is_ascii_lowercase()))
            });
        if starts_word {
            words.push('_');
        }
        words.push(c);
    }
    let base = base_identifier(&words);
    let mut out = String::with_capacity(base.len());
    for c in base.chars() {
        if c == '_' && (out.is_empty() || out.ends_with('_')) {
            continue;
        }
        out.push(c);
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        return "entity".into();
    }
    if out.as_bytes()[0].is_ascii_digit() {
        out.insert_str(0, "c_");
    }
    if is_reserved(&out) {
        out.push_str("_table");
    }
    out.truncate(MAX_IDENTIFIER_BYTES);
    out
}

/// 32-bit FNV-1a: small, stable across platforms and releases (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign_all(names: &[&str]) -> Vec<String> {
        let mut taken = HashSet::new();
        names.iter().map(|n| assign(n, &mut taken)).collect()
    }

    #[test]
    fn lowercases_and_replaces_unsafe_characters() {
        assert_eq!(base_identifier("Created At"), "created_at");
        assert_eq!(base_identifier("a.b-c"), "a_b_c");
        assert_eq!(base_identifier("größe"), "gr__e");
        assert_eq!(base_identifier("drop table x;--"), "drop_table_x___");
    }

    #[test]
    fn digits_and_empty_names_get_a_prefix() {
        assert_eq!(base_identifier("1st"), "c_1st");
        assert_eq!(base_identifier(""), "c_");
    }

    #[test]
    fn system_columns_are_avoided() {
        for name in ["oid", "XMIN", "ctid", "_extra", "tableoid"] {
            let id = base_identifier(name);
            assert!(!is_reserved(&id), "{name} -> {id}");
            assert!(is_safe_identifier(&id), "{name} -> {id}");
        }
    }

    #[test]
    fn long_names_are_cut_with_a_hash_and_stay_distinct() {
        let a = "a".repeat(80);
        let b = format!("{}b", "a".repeat(79));
        let (ia, ib) = (base_identifier(&a), base_identifier(&b));
        assert_eq!(ia.len(), MAX_IDENTIFIER_BYTES);
        assert_ne!(ia, ib);
        assert!(is_safe_identifier(&ia));
        assert_eq!(ia, base_identifier(&a), "must be deterministic");
    }

    #[test]
    fn multibyte_names_never_exceed_the_byte_limit() {
        let id = base_identifier(&"é".repeat(70));
        assert!(id.len() <= MAX_IDENTIFIER_BYTES);
        assert!(is_safe_identifier(&id));
    }

    #[test]
    fn case_collisions_get_numbered_in_order() {
        assert_eq!(
            assign_all(&["Name", "name", "NAME"]),
            ["name", "name_2", "name_3"]
        );
    }

    #[test]
    fn collision_suffix_respects_the_length_limit() {
        let long = "x".repeat(63);
        let ids = assign_all(&[&long, &long.to_uppercase()]);
        assert_ne!(ids[0], ids[1]);
        assert!(ids.iter().all(|i| is_safe_identifier(i)), "{ids:?}");
    }

    #[test]
    fn names_starting_with_digits_stay_distinct_and_safe() {
        assert_eq!(base_identifier("2024"), "c_2024");
        assert_eq!(base_identifier("9lives"), "c_9lives");
        assert_eq!(base_identifier("0_x"), "c_0_x");
        // `c_1st` as a real attribute collides with the prefixed `1st` and is numbered.
        assert_eq!(assign_all(&["1st", "c_1st"]), ["c_1st", "c_1st_2"]);
        for id in assign_all(&["1", "12", "123"]) {
            assert!(is_safe_identifier(&id), "{id}");
        }
    }

    #[test]
    fn non_ascii_names_become_underscores_and_are_numbered_apart() {
        assert_eq!(base_identifier("名前"), "__");
        assert_eq!(base_identifier("🚀launch"), "_launch");
        assert_eq!(base_identifier("Ärger"), "_rger");
        // Two different non-ASCII names map to the same base and must not share a column.
        assert_eq!(assign_all(&["名前", "住所"]), ["__", "___2"]);
        for id in assign_all(&["名前", "住所", "ü", "Ü"]) {
            assert!(is_safe_identifier(&id), "{id}");
        }
    }

    #[test]
    fn names_colliding_with_extra_never_take_the_metadata_column() {
        let ids = assign_all(&["_extra", "_EXTRA", "_Extra_", "extra"]);
        assert_eq!(ids, ["_extra_", "_extra__2", "_extra__3", "extra"]);
        assert!(!ids.iter().any(|i| i == "_extra"));
        // Even a name that is already taken by an earlier `_extra_` column is numbered.
        let mut taken: HashSet<String> = ["_extra_".to_string()].into();
        assert_eq!(assign("_extra", &mut taken), "_extra__2");
    }

    #[test]
    fn entity_names_become_snake_case_table_names_never_like_ours() {
        for (entity, table) in [
            ("UserSettings", "user_settings"),
            ("CUSTOMER#", "customer"),
            ("#ORDER#", "order"),
            ("$taskapp#", "taskapp"),
            ("HTTPServer", "http_server"),
            ("orderItem2", "order_item2"),
            ("__typename", "typename"),
            ("_unclassified", "unclassified"),
            ("_inc_upsert", "inc_upsert"),
            ("2024", "c_2024"),
            ("_2024", "c_2024"),
            ("#", "entity"),
            ("名前", "entity"),
            ("oid", "oid_table"),
            ("Ärger Über", "rger_ber"),
        ] {
            let name = entity_table_name(entity);
            assert_eq!(name, table, "{entity}");
            assert!(is_safe_identifier(&name) && !is_reserved(&name), "{name}");
        }
        assert!(is_safe_identifier(&entity_table_name(
            &"LongName".repeat(20)
        )));
    }

    #[test]
    fn one_limit_of_63_bytes_serves_postgresql_and_redshift() {
        // 63 bytes fits both dialects and is kept as is.
        let fits = "a".repeat(63);
        assert_eq!(base_identifier(&fits), fits);
        // 64 and 100 bytes would fit Redshift (127) but not PostgreSQL: cut for both.
        for len in [64, 100, 127, 128, 300] {
            let id = base_identifier(&"a".repeat(len));
            assert_eq!(id.len(), MAX_IDENTIFIER_BYTES, "{len}");
            assert!(is_safe_identifier(&id));
        }
        // The hash keeps names that agree on their first 63 bytes apart.
        let a = format!("{}_left", "x".repeat(80));
        let b = format!("{}_right", "x".repeat(80));
        assert_ne!(base_identifier(&a), base_identifier(&b));
        assert!(!is_safe_identifier(&"a".repeat(64)));
    }
}
