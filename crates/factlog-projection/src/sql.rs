//! What the SQL sinks (SQLite and PostgreSQL) share: how a projection's logical table maps to
//! the physical table of one generation, and how a checkpoint row reads back.

use factlog_store::{Checkpoint, Position};

use crate::projection::{HandleError, ProjectionName};
use crate::sink::SinkError;

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

/// The checkpoint of `generation` of `projection` from its row's `position` and `partitions`
/// columns ([`Checkpoint::from_columns`]). `sink` names the sink in the error.
pub(crate) fn checkpoint_from_columns(
    sink: &str,
    projection: &ProjectionName,
    generation: u64,
    position: Position,
    partitions: Option<&str>,
) -> Result<Checkpoint, SinkError> {
    Checkpoint::from_columns(position, partitions).map_err(|e| {
        SinkError::Invalid(format!(
            "{sink}: the checkpoint of {projection} generation {generation} cannot be read: {e} \
             (it was changed outside Factlog: correct its partitions column)"
        ))
    })
}

/// An event's position in a signed 64-bit column, bit for bit: positions of the Kafka backend
/// use all 64 bits (a category id from 32768 on sets the top one). [`position_of_column`] reads
/// it back.
pub(crate) fn position_column(position: Position) -> i64 {
    position.raw() as i64
}

pub(crate) fn position_of_column(value: i64) -> Position {
    Position::from_raw(value as u64)
}
