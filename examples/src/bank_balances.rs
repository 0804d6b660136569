//! The bank's balances as a projection: one row per account in SQLite, built from the log by
//! the projection runtime (`factlog-projection`), with its checkpoint in the same transaction.
//!
//! Readers query the view `balances` (`account_id`, `owner`, `balance`, `open`), which always
//! shows the live generation of the read model.

use factlog_aggregate::DomainEvent;
use factlog_projection::{HandleError, Interest, Projection, SqliteSink, SqliteUnit};
use factlog_store::RecordedEvent;
use rusqlite::params;

use crate::bank::{Account, AccountEvent};

/// The table (and view) of the balances.
pub const TABLE: &str = "balances";

/// Balances of every account: the events of the `account` category.
#[derive(Debug, Clone, Copy, Default)]
pub struct Balances;

impl Projection<SqliteSink> for Balances {
    fn interest(&self) -> Interest {
        Interest::categories([<Account as factlog_aggregate::Aggregate>::CATEGORY])
    }

    fn setup(&self, unit: &mut SqliteUnit<'_>) -> Result<(), HandleError> {
        unit.create_table(
            TABLE,
            "(account_id TEXT PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL, \
             open INTEGER NOT NULL)",
        )
    }

    fn handle(&self, event: &RecordedEvent, unit: &mut SqliteUnit<'_>) -> Result<(), HandleError> {
        // The stream is `account-<id>`; the id is what the aggregate was executed with.
        let account_id = event
            .stream
            .as_str()
            .split_once('-')
            .map(|(_, id)| id)
            .ok_or_else(|| HandleError::Permanent(format!("{} has no account id", event.stream)))?;
        let decoded = AccountEvent::schema()
            .decode_recorded(event)
            .map_err(HandleError::permanent)?;
        let table = unit.table(TABLE);
        let tx = unit.tx();
        match decoded {
            AccountEvent::Opened(opened) => {
                tx.prepare_cached(&format!(
                    "INSERT INTO {table} (account_id, owner, balance, open) VALUES (?1, ?2, 0, 1)"
                ))?
                .execute(params![account_id, opened.owner])?;
            }
            AccountEvent::Deposited(deposited) => {
                tx.prepare_cached(&format!(
                    "UPDATE {table} SET balance = balance + ?2 WHERE account_id = ?1"
                ))?
                .execute(params![account_id, deposited.amount as i64])?;
            }
            AccountEvent::Withdrawn(withdrawn) => {
                tx.prepare_cached(&format!(
                    "UPDATE {table} SET balance = balance - ?2 WHERE account_id = ?1"
                ))?
                .execute(params![account_id, withdrawn.amount as i64])?;
            }
            AccountEvent::Closed(_) => {
                tx.prepare_cached(&format!(
                    "UPDATE {table} SET open = 0 WHERE account_id = ?1"
                ))?
                .execute(params![account_id])?;
            }
        }
        Ok(())
    }
}
