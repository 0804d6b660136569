//! [`StreamSummary`] in Redis.
