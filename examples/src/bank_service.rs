//! The bank example as an HTTP service: commands go through the `Account` aggregate's
//! repository; queries read the balances read model (or travel in time through the repository).
//! The contract is documented in docs/examples.md.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use factlog_aggregate::{Executed, RetryPolicy};
use factlog_store::RecordedEvent;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::bank::{Account, AccountCommand, AccountEvent, BankError};
use crate::service::{
    Backend, Body, HistoryQuery, Problem, ReadModel, Service, TimeTravel, decode_for_view,
};

/// One account in the read model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountRow {
    pub account_id: String,
    pub owner: String,
    pub balance: u64,
    pub version: u64,
    pub open: bool,
}

/// The query side: every account's balance, and the bank's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Balances {
    pub accounts: BTreeMap<String, AccountRow>,
    pub total_balance: u64,
    pub events_applied: u64,
}

impl ReadModel for Balances {
    const NAME: &'static str = "balances";
    const CATEGORY: &'static str = "account";

    fn apply(&mut self, event: &RecordedEvent) {
        let Some(decoded) = decode_for_view::<Account>(event) else {
            return;
        };
        self.events_applied += 1;
        if let AccountEvent::Opened(opened) = &decoded {
            self.accounts.insert(
                opened.account_id.clone(),
                AccountRow {
                    account_id: opened.account_id.clone(),
                    owner: opened.owner.clone(),
                    balance: 0,
                    version: event.version,
                    open: true,
                },
            );
            return;
        }
        let id = event
            .stream
            .as_str()
            .strip_prefix("account-")
            .unwrap_or_default();
        let Some(row) = self.accounts.get_mut(id) else {
            return;
        };
        row.version = event.version;
        match decoded {
            AccountEvent::Opened(_) => {}
            AccountEvent::Deposited(e) => {
                row.balance += e.amount;
                self.total_balance += e.amount;
            }
            AccountEvent::Withdrawn(e) => {
                row.balance = row.balance.saturating_sub(e.amount);
                self.total_balance = self.total_balance.saturating_sub(e.amount);
            }
            AccountEvent::Closed(_) => row.open = false,
        }
    }
}

/// The bank service's state.
pub type BankApp = Service<Account, Balances>;

/// Options of [`new_app`] beyond the backend.
#[derive(Debug, Clone, Default)]
pub struct BankOptions {
    /// Holds replays open after their start marker until a permit is added (tests).
    pub replay_hold: Option<Arc<Semaphore>>,
}

pub fn new_app(backend: &Backend, options: BankOptions) -> Arc<BankApp> {
    // Many clients on one account lose races often; retry with backoff.
    let retry = RetryPolicy {
        attempts_max: 64,
        ..RetryPolicy::default()
    };
    Arc::new(Service::new(backend, retry, options.replay_hold))
}

pub fn router(app: Arc<BankApp>) -> Router {
    Router::new()
        .route("/accounts", post(open_account).get(list_accounts))
        .route("/accounts/{id}", get(get_account))
        .route("/accounts/{id}/deposits", post(deposit))
        .route("/accounts/{id}/withdrawals", post(withdraw))
        .route("/accounts/{id}/close", post(close))
        .route("/accounts/{id}/history", get(history))
        .route("/transfers", post(transfer))
        .route("/api/replay-events", post(replay).get(replay_status))
        .with_state(app)
}

fn rejected(error: BankError) -> Problem {
    let detail = error.to_string();
    match error {
        BankError::AccountNotFound => Problem::new(
            StatusCode::NOT_FOUND,
            "account-not-found",
            "No such account",
            detail,
        ),
        BankError::AccountExists(_) => Problem::new(
            StatusCode::CONFLICT,
            "account-exists",
            "The account already exists",
            detail,
        ),
        BankError::AccountClosed(_) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "account-closed",
            "The account is closed",
            detail,
        ),
        BankError::InsufficientFunds { balance, requested } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "insufficient-funds",
            "Insufficient funds",
            detail,
        )
        .with("balance", balance)
        .with("requested", requested),
        BankError::InvalidAmount => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-amount",
            "Invalid amount",
            detail,
        ),
        BankError::BalanceNotZero { balance } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "balance-not-zero",
            "The balance is not zero",
            detail,
        )
        .with("balance", balance),
        BankError::InvalidAccount => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-account",
            "Invalid account",
            detail,
        ),
    }
}

fn account_json(executed: &Executed<Account>) -> serde_json::Value {
    json!({
        "accountId": executed.id,
        "owner": executed.state.owner,
        "balance": executed.state.balance,
        "version": executed.version,
        "open": executed.state.open,
    })
}

async fn run(
    app: &BankApp,
    headers: &HeaderMap,
    commands: Vec<(String, AccountCommand)>,
    command_id: Option<String>,
) -> Result<Vec<Executed<Account>>, Problem> {
    app.execute(headers, commands, command_id, rejected).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OpenAccount {
    account_id: String,
    owner: String,
    command_id: Option<String>,
}

async fn open_account(
    State(app): State<Arc<BankApp>>,
    headers: HeaderMap,
    Body(body): Body<OpenAccount>,
) -> Result<Response, Problem> {
    let command = AccountCommand::Open {
        account_id: body.account_id.clone(),
        owner: body.owner,
    };
    let executed = run(
        &app,
        &headers,
        vec![(body.account_id, command)],
        body.command_id,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(account_json(&executed[0]))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Amount {
    amount: u64,
    command_id: Option<String>,
}

async fn deposit(
    State(app): State<Arc<BankApp>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body<Amount>,
) -> Result<Json<serde_json::Value>, Problem> {
    let command = AccountCommand::Deposit {
        amount: body.amount,
        transfer_id: None,
    };
    let executed = run(&app, &headers, vec![(id, command)], body.command_id).await?;
    Ok(Json(account_json(&executed[0])))
}

async fn withdraw(
    State(app): State<Arc<BankApp>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body<Amount>,
) -> Result<Json<serde_json::Value>, Problem> {
    let command = AccountCommand::Withdraw {
        amount: body.amount,
        transfer_id: None,
    };
    let executed = run(&app, &headers, vec![(id, command)], body.command_id).await?;
    Ok(Json(account_json(&executed[0])))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CloseAccount {
    command_id: Option<String>,
}

async fn close(
    State(app): State<Arc<BankApp>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, Problem> {
    // The body is optional: an empty one closes without a command id.
    let command_id = if body.is_empty() {
        None
    } else {
        serde_json::from_slice::<CloseAccount>(&body)
            .map_err(|e| Problem::bad_request(format!("the body is not a close request: {e}")))?
            .command_id
    };
    let executed = run(
        &app,
        &headers,
        vec![(id, AccountCommand::Close)],
        command_id,
    )
    .await?;
    Ok(Json(account_json(&executed[0])))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Transfer {
    from: String,
    to: String,
    amount: u64,
    command_id: Option<String>,
}

async fn transfer(
    State(app): State<Arc<BankApp>>,
    headers: HeaderMap,
    Body(body): Body<Transfer>,
) -> Result<Json<serde_json::Value>, Problem> {
    if body.from == body.to {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "same-account",
            "A transfer needs two accounts",
            "from and to name the same account",
        ));
    }
    // The transfer id is the command id when the client gave one, so a retried transfer
    // carries the same id in its events.
    let command_id = body
        .command_id
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let transfer_id = Some(command_id.clone());
    let commands = vec![
        (
            body.from,
            AccountCommand::Withdraw {
                amount: body.amount,
                transfer_id: transfer_id.clone(),
            },
        ),
        (
            body.to,
            AccountCommand::Deposit {
                amount: body.amount,
                transfer_id,
            },
        ),
    ];
    let executed = run(&app, &headers, commands, Some(command_id.clone())).await?;
    Ok(Json(json!({
        "transferId": command_id,
        "amount": body.amount,
        "from": account_json(&executed[0]),
        "to": account_json(&executed[1]),
    })))
}

async fn get_account(
    State(app): State<Arc<BankApp>>,
    Path(id): Path<String>,
    query: Result<Query<TimeTravel>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, Problem> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let not_found = || {
        Problem::new(
            StatusCode::NOT_FOUND,
            "account-not-found",
            "No such account",
            format!("account {id} does not exist"),
        )
    };
    match query.at()? {
        None => {
            let row = app.view.read(|m| m.accounts.get(&id).cloned()).await;
            let row = row.ok_or_else(not_found)?;
            Ok(Json(serde_json::to_value(row).expect("serializes")))
        }
        Some(at) => {
            let loaded = app
                .repository
                .load_at(&id, at)
                .await
                .map_err(Problem::from_load)?;
            if !loaded.state.exists() {
                return Err(Problem::new(
                    StatusCode::NOT_FOUND,
                    "account-not-found",
                    "No such account",
                    format!("account {id} did not exist then"),
                ));
            }
            Ok(Json(json!({
                "accountId": id,
                "owner": loaded.state.owner,
                "balance": loaded.state.balance,
                "version": loaded.version,
                "open": loaded.state.open,
            })))
        }
    }
}

async fn list_accounts(State(app): State<Arc<BankApp>>) -> Json<serde_json::Value> {
    let balances = app.view.read(|m| m.clone()).await;
    Json(json!({
        "accounts": balances.accounts.values().collect::<Vec<_>>(),
        "totalBalance": balances.total_balance,
        "eventsApplied": balances.events_applied,
    }))
}

async fn history(
    State(app): State<Arc<BankApp>>,
    Path(id): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, Problem> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let events = app
        .history(&id, &query, || {
            Problem::new(
                StatusCode::NOT_FOUND,
                "account-not-found",
                "No such account",
                format!("account {id} does not exist"),
            )
        })
        .await?;
    Ok(Json(json!({ "accountId": id, "events": events })))
}

async fn replay(State(app): State<Arc<BankApp>>) -> Result<Json<serde_json::Value>, Problem> {
    app.replay_response().await
}

async fn replay_status(State(app): State<Arc<BankApp>>) -> Json<serde_json::Value> {
    app.replay_status_response().await
}
