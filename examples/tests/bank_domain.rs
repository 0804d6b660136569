//! Every rule of the bank account, with the test kit (no storage).

use factlog_aggregate::testkit::given;
use factlog_examples::bank::{
    Account, AccountClosed, AccountCommand, AccountEvent, AccountOpened, BankError, MoneyDeposited,
    MoneyWithdrawn,
};

fn opened() -> AccountEvent {
    AccountEvent::Opened(AccountOpened {
        account_id: "a1".into(),
        owner: "Ada".into(),
    })
}

fn deposited(amount: u64) -> AccountEvent {
    AccountEvent::Deposited(MoneyDeposited {
        amount,
        transfer_id: None,
    })
}

fn withdrawn(amount: u64) -> AccountEvent {
    AccountEvent::Withdrawn(MoneyWithdrawn {
        amount,
        transfer_id: None,
    })
}

fn closed() -> AccountEvent {
    AccountEvent::Closed(AccountClosed {})
}

fn deposit(amount: u64) -> AccountCommand {
    AccountCommand::Deposit {
        amount,
        transfer_id: None,
    }
}

fn withdraw(amount: u64) -> AccountCommand {
    AccountCommand::Withdraw {
        amount,
        transfer_id: None,
    }
}

fn open() -> AccountCommand {
    AccountCommand::Open {
        account_id: "a1".into(),
        owner: "Ada".into(),
    }
}

#[test]
fn an_account_opens_once() {
    let state = given::<Account>([]).when(open()).then([opened()]);
    assert!(state.open && state.exists());
    assert_eq!(state.balance, 0);
    given::<Account>([opened()])
        .when(open())
        .then_error(BankError::AccountExists("a1".into()));
    given::<Account>([])
        .when(AccountCommand::Open {
            account_id: "a1".into(),
            owner: " ".into(),
        })
        .then_error(BankError::InvalidAccount);
}

#[test]
fn deposits_add_to_the_balance() {
    let state = given::<Account>([opened(), deposited(30)])
        .when(deposit(12))
        .then([deposited(12)]);
    assert_eq!(state.balance, 42);
    given::<Account>([opened()])
        .when(deposit(0))
        .then_error(BankError::InvalidAmount);
    given::<Account>([opened(), deposited(u64::MAX)])
        .when(deposit(1))
        .then_error(BankError::InvalidAmount);
}

#[test]
fn withdrawals_never_overdraw() {
    let state = given::<Account>([opened(), deposited(10)])
        .when(withdraw(10))
        .then([withdrawn(10)]);
    assert_eq!(state.balance, 0);
    given::<Account>([opened(), deposited(10), withdrawn(4)])
        .when(withdraw(7))
        .then_error(BankError::InsufficientFunds {
            balance: 6,
            requested: 7,
        });
    given::<Account>([opened()])
        .when(withdraw(0))
        .then_error(BankError::InvalidAmount);
}

#[test]
fn transfers_record_their_id_on_both_sides() {
    let command = AccountCommand::Withdraw {
        amount: 5,
        transfer_id: Some("t-1".into()),
    };
    given::<Account>([opened(), deposited(5)])
        .when(command)
        .then([AccountEvent::Withdrawn(MoneyWithdrawn {
            amount: 5,
            transfer_id: Some("t-1".into()),
        })]);
    let command = AccountCommand::Deposit {
        amount: 5,
        transfer_id: Some("t-1".into()),
    };
    given::<Account>([opened()])
        .when(command)
        .then([AccountEvent::Deposited(MoneyDeposited {
            amount: 5,
            transfer_id: Some("t-1".into()),
        })]);
}

#[test]
fn an_account_closes_only_empty_and_then_takes_nothing() {
    let state = given::<Account>([opened(), deposited(3), withdrawn(3)])
        .when(AccountCommand::Close)
        .then([closed()]);
    assert!(!state.open);
    given::<Account>([opened(), deposited(3)])
        .when(AccountCommand::Close)
        .then_error(BankError::BalanceNotZero { balance: 3 });
    for command in [deposit(1), withdraw(1), AccountCommand::Close] {
        given::<Account>([opened(), closed()])
            .when(command)
            .then_error(BankError::AccountClosed("a1".into()));
    }
    given::<Account>([opened(), closed()])
        .when(open())
        .then_error(BankError::AccountExists("a1".into()));
}

#[test]
fn commands_on_a_missing_account_are_refused() {
    for command in [deposit(1), withdraw(1), AccountCommand::Close] {
        given::<Account>([])
            .when(command)
            .then_error(BankError::AccountNotFound);
    }
}
