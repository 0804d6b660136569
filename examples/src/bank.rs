//! The bank account domain: open, deposit, withdraw, close; no overdraft.
//!
//! Amounts are integers in minor units (cents), so no rounding ever happens.

use std::sync::OnceLock;

use factlog_aggregate::{Aggregate, DomainEvent, EventSchema};
use serde::{Deserialize, Serialize};

/// An account's state, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// Set by `AccountOpened`; an account without it does not exist.
    pub account_id: Option<String>,
    pub owner: String,
    pub balance: u64,
    pub open: bool,
}

impl Account {
    pub fn exists(&self) -> bool {
        self.account_id.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCommand {
    Open {
        account_id: String,
        owner: String,
    },
    Deposit {
        amount: u64,
        /// The transfer this deposit is part of.
        transfer_id: Option<String>,
    },
    Withdraw {
        amount: u64,
        transfer_id: Option<String>,
    },
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountOpened {
    pub account_id: String,
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoneyDeposited {
    pub amount: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoneyWithdrawn {
    pub amount: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountClosed {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum AccountEvent {
    Opened(AccountOpened),
    Deposited(MoneyDeposited),
    Withdrawn(MoneyWithdrawn),
    Closed(AccountClosed),
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::Opened(_) => "AccountOpened",
            AccountEvent::Deposited(_) => "MoneyDeposited",
            AccountEvent::Withdrawn(_) => "MoneyWithdrawn",
            AccountEvent::Closed(_) => "AccountClosed",
        }
    }

    fn schema() -> &'static EventSchema<Self> {
        static SCHEMA: OnceLock<EventSchema<AccountEvent>> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            EventSchema::new()
                .event("AccountOpened", 1, AccountEvent::Opened)
                .event("MoneyDeposited", 1, AccountEvent::Deposited)
                .event("MoneyWithdrawn", 1, AccountEvent::Withdrawn)
                .event("AccountClosed", 1, AccountEvent::Closed)
        })
    }
}

/// Why the bank refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BankError {
    #[error("the account does not exist")]
    AccountNotFound,
    #[error("account {0} already exists")]
    AccountExists(String),
    #[error("account {0} is closed")]
    AccountClosed(String),
    #[error("the balance is {balance}, less than the {requested} requested")]
    InsufficientFunds { balance: u64, requested: u64 },
    #[error("an amount must be a positive number of cents")]
    InvalidAmount,
    #[error("the balance is {balance}; only an account with a zero balance can be closed")]
    BalanceNotZero { balance: u64 },
    #[error("an account id and an owner must not be empty")]
    InvalidAccount,
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = BankError;

    fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, BankError> {
        let id = || self.account_id.clone().unwrap_or_default();
        if let AccountCommand::Open { account_id, owner } = command {
            if self.exists() {
                return Err(BankError::AccountExists(id()));
            }
            if account_id.is_empty() || owner.trim().is_empty() {
                return Err(BankError::InvalidAccount);
            }
            return Ok(vec![AccountEvent::Opened(AccountOpened {
                account_id: account_id.clone(),
                owner: owner.clone(),
            })]);
        }
        if !self.exists() {
            return Err(BankError::AccountNotFound);
        }
        if !self.open {
            return Err(BankError::AccountClosed(id()));
        }
        match command {
            AccountCommand::Open { .. } => unreachable!("handled above"),
            AccountCommand::Deposit { amount: 0, .. }
            | AccountCommand::Withdraw { amount: 0, .. } => Err(BankError::InvalidAmount),
            AccountCommand::Deposit {
                amount,
                transfer_id,
            } => {
                self.balance
                    .checked_add(*amount)
                    .ok_or(BankError::InvalidAmount)?;
                Ok(vec![AccountEvent::Deposited(MoneyDeposited {
                    amount: *amount,
                    transfer_id: transfer_id.clone(),
                })])
            }
            AccountCommand::Withdraw {
                amount,
                transfer_id,
            } => {
                if *amount > self.balance {
                    return Err(BankError::InsufficientFunds {
                        balance: self.balance,
                        requested: *amount,
                    });
                }
                Ok(vec![AccountEvent::Withdrawn(MoneyWithdrawn {
                    amount: *amount,
                    transfer_id: transfer_id.clone(),
                })])
            }
            AccountCommand::Close if self.balance != 0 => Err(BankError::BalanceNotZero {
                balance: self.balance,
            }),
            AccountCommand::Close => Ok(vec![AccountEvent::Closed(AccountClosed {})]),
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened(e) => {
                self.account_id = Some(e.account_id.clone());
                self.owner = e.owner.clone();
                self.open = true;
            }
            AccountEvent::Deposited(e) => self.balance = self.balance.saturating_add(e.amount),
            AccountEvent::Withdrawn(e) => self.balance = self.balance.saturating_sub(e.amount),
            AccountEvent::Closed(_) => self.open = false,
        }
    }
}
