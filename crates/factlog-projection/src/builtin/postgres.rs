//! [`StreamSummary`] in PostgreSQL.
