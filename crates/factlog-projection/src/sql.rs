//! Names shared by the SQL sinks (SQLite and PostgreSQL): how a projection's logical table maps
//! to the physical table of one generation.

use crate::projection::{HandleError, ProjectionName};

/// PostgreSQL's limit on identifiers, which the SQLite sink keeps too so that a projection
/// moves between the two unchanged.
const IDENTIFIER_BYTES_MAX: usize = 63;

/// The physical table of `logical` in `generation`, quoted: `"<projection>__<logical>__g<n>"`.
/// Readers use the view `"<logical>"`, which points at the live generation's table.
pub(crate) fn physical_table(
    projection: &ProjectionName,
    generation: u64,
    logical: &str,
) -> String {
    format!("\"{projection}__{logical}__g{generation}\"")
}

/// A logical table name is like a projection name: `a-z`, `0-9` and `_`, starting with a letter,
/// short enough that its physical name fits in an identifier.
pub(crate) fn check_logical_in(
    projection: &ProjectionName,
    logical: &str,
) -> Result<(), HandleError> {
    let valid = logical.starts_with(|c: char| c.is_ascii_lowercase())
        && !logical.starts_with(crate::projection::RESERVED_PREFIX)
        && logical
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(HandleError::Permanent(format!(
            "invalid table name {logical:?}: use a-z, 0-9 and _, starting with a letter and not with sqlite_"
        )));
    }
    // The unquoted physical name with a generation of up to 6 digits.
    let bytes = projection.as_str().len() + 2 + logical.len() + 2 + 7;
    if bytes > IDENTIFIER_BYTES_MAX {
        return Err(HandleError::Permanent(format!(
            "table name {logical:?} of projection {projection} is too long: the projection's \
             and the table's names together must stay under {} bytes",
            IDENTIFIER_BYTES_MAX - 11
        )));
    }
    Ok(())
}
