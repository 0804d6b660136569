//! The order example as an HTTP service: commands go through the `Order` aggregate's
//! repository; queries read the orders read model (or travel in time through the repository).
//! The contract is documented in docs/examples.md.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use factlog_aggregate::RetryPolicy;
use factlog_store::{RecordedEvent, Version};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::orders::{DEFAULT_CURRENCY, Order, OrderCommand, OrderError, OrderItem, OrderStatus};
use crate::service::{
    Backend, Body, HistoryQuery, Problem, ReadModel, Service, TimeTravel, decode_for_view,
};

/// An order as the service answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderDoc {
    pub order_id: String,
    pub customer: String,
    pub currency: String,
    pub items: Vec<OrderItem>,
    pub total: u64,
    pub status: OrderStatus,
    pub version: Option<Version>,
}

impl OrderDoc {
    /// `None` when the order does not exist in `state`.
    fn new(order_id: &str, state: &Order, version: Option<Version>) -> Option<Self> {
        Some(Self {
            order_id: order_id.to_owned(),
            customer: state.customer.clone(),
            currency: state.currency.clone(),
            items: state.items.clone(),
            total: state.total,
            status: state.status?,
            version,
        })
    }
}

/// One order in the list of orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderSummary {
    pub order_id: String,
    pub customer: String,
    pub currency: String,
    pub status: OrderStatus,
    pub total: u64,
    /// The number of item lines (one per `ItemAdded`).
    pub item_count: usize,
    pub version: Version,
}

/// The query side: every order, keyed by id.
///
/// Each order's state is folded with the aggregate's own `apply`, so the read model and the
/// write side cannot disagree about what an event means; what the read model adds is that it is
/// kept in memory, up to date, for every order at once.
#[derive(Debug, Clone, Default)]
pub struct Orders {
    pub orders: BTreeMap<String, (Order, Version)>,
    pub events_applied: u64,
}

impl Orders {
    pub fn get(&self, order_id: &str) -> Option<OrderDoc> {
        let (state, version) = self.orders.get(order_id)?;
        OrderDoc::new(order_id, state, Some(*version))
    }

    pub fn summaries(&self) -> Vec<OrderSummary> {
        self.orders
            .iter()
            .filter_map(|(id, (state, version))| {
                Some(OrderSummary {
                    order_id: id.clone(),
                    customer: state.customer.clone(),
                    currency: state.currency.clone(),
                    status: state.status?,
                    total: state.total,
                    item_count: state.items.len(),
                    version: *version,
                })
            })
            .collect()
    }
}

impl ReadModel for Orders {
    const NAME: &'static str = "orders";
    const CATEGORY: &'static str = "order";

    fn apply(&mut self, event: &RecordedEvent) {
        let Some(decoded) = decode_for_view::<Order>(event) else {
            return;
        };
        let Some(id) = event.stream.as_str().strip_prefix("order-") else {
            return;
        };
        self.events_applied += 1;
        let (state, version) = self
            .orders
            .entry(id.to_owned())
            .or_insert_with(|| (Order::default(), event.version));
        factlog_aggregate::Aggregate::apply(state, &decoded);
        *version = event.version;
    }
}

/// The order service's state.
pub type OrdersApp = Service<Order, Orders>;

/// Options of [`new_app`] beyond the backend.
#[derive(Debug, Clone, Default)]
pub struct OrdersOptions {
    /// Holds replays open after their start marker until a permit is added (tests).
    pub replay_hold: Option<Arc<Semaphore>>,
}

pub fn new_app(backend: &Backend, options: OrdersOptions) -> Arc<OrdersApp> {
    let retry = RetryPolicy {
        attempts_max: 16,
        ..RetryPolicy::default()
    };
    Arc::new(Service::new(backend, retry, options.replay_hold))
}

pub fn router(app: Arc<OrdersApp>) -> Router {
    Router::new()
        .route("/orders", post(create_order).get(list_orders))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/items", post(add_item))
        .route("/orders/{id}/payments", post(capture_payment))
        .route("/orders/{id}/shipments", post(ship))
        .route("/orders/{id}/history", get(history))
        .route("/api/replay-events", post(replay).get(replay_status))
        .with_state(app)
}

fn order_not_found(detail: String) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "order-not-found",
        "No such order",
        detail,
    )
}

fn rejected(error: OrderError) -> Problem {
    let detail = error.to_string();
    let invalid =
        |slug, title| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, slug, title, &*detail);
    match error {
        OrderError::OrderNotFound => order_not_found(detail.clone()),
        OrderError::OrderExists(_) => Problem::new(
            StatusCode::CONFLICT,
            "order-exists",
            "The order already exists",
            detail.clone(),
        ),
        OrderError::InvalidOrder(_) => invalid("invalid-order", "Invalid order"),
        OrderError::InvalidQuantity(_)
        | OrderError::InvalidUnitPrice(_)
        | OrderError::EmptySku
        | OrderError::TotalTooLarge => invalid("invalid-item", "Invalid item"),
        OrderError::OrderPaid(_) => invalid("order-paid", "The order is paid"),
        OrderError::OrderNotPaid(_) => invalid("order-not-paid", "The order is not paid"),
        OrderError::OrderShipped(_) => invalid("order-shipped", "The order is shipped"),
        OrderError::NoItems(_) => invalid("no-items", "The order has no items"),
        OrderError::WrongAmount { total, amount } => {
            invalid("wrong-amount", "The amount is not the order total")
                .with("total", total)
                .with("amount", amount)
        }
        OrderError::InvalidCarrier => invalid("invalid-carrier", "Invalid carrier"),
    }
}

/// Executes one command and answers the order right after it, once the read model shows it.
async fn run(
    app: &OrdersApp,
    headers: &HeaderMap,
    id: &str,
    command: OrderCommand,
    command_id: Option<String>,
) -> Result<OrderDoc, Problem> {
    let executed = app
        .execute(
            headers,
            vec![(id.to_owned(), command)],
            command_id,
            rejected,
        )
        .await?;
    let executed = &executed[0];
    OrderDoc::new(&executed.id, &executed.state, executed.version)
        .ok_or_else(|| order_not_found(format!("order {id} does not exist")))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateOrder {
    order_id: String,
    customer: String,
    currency: Option<String>,
    command_id: Option<String>,
}

async fn create_order(
    State(app): State<Arc<OrdersApp>>,
    headers: HeaderMap,
    Body(body): Body<CreateOrder>,
) -> Result<Response, Problem> {
    let command = OrderCommand::Create {
        order_id: body.order_id.clone(),
        customer: body.customer,
        currency: body.currency.unwrap_or_else(|| DEFAULT_CURRENCY.to_owned()),
    };
    let order = run(&app, &headers, &body.order_id, command, body.command_id).await?;
    Ok((StatusCode::CREATED, Json(order)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddItem {
    sku: String,
    quantity: i64,
    unit_price: i64,
    command_id: Option<String>,
}

async fn add_item(
    State(app): State<Arc<OrdersApp>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body<AddItem>,
) -> Result<Json<OrderDoc>, Problem> {
    let command = OrderCommand::AddItem {
        sku: body.sku,
        quantity: body.quantity,
        unit_price: body.unit_price,
    };
    Ok(Json(
        run(&app, &headers, &id, command, body.command_id).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Payment {
    amount: i64,
    command_id: Option<String>,
}

async fn capture_payment(
    State(app): State<Arc<OrdersApp>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body<Payment>,
) -> Result<Json<OrderDoc>, Problem> {
    let command = OrderCommand::CapturePayment {
        amount: body.amount,
    };
    Ok(Json(
        run(&app, &headers, &id, command, body.command_id).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Shipment {
    carrier: String,
    command_id: Option<String>,
}

async fn ship(
    State(app): State<Arc<OrdersApp>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body<Shipment>,
) -> Result<Json<OrderDoc>, Problem> {
    let command = OrderCommand::Ship {
        carrier: body.carrier,
    };
    Ok(Json(
        run(&app, &headers, &id, command, body.command_id).await?,
    ))
}

async fn get_order(
    State(app): State<Arc<OrdersApp>>,
    Path(id): Path<String>,
    query: Result<Query<TimeTravel>, QueryRejection>,
) -> Result<Json<OrderDoc>, Problem> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    match query.at()? {
        None => {
            let order = app.view.read(|m| m.get(&id)).await;
            order
                .map(Json)
                .ok_or_else(|| order_not_found(format!("order {id} does not exist")))
        }
        Some(at) => {
            let loaded = app
                .repository
                .load_at(&id, at)
                .await
                .map_err(Problem::from_load)?;
            OrderDoc::new(&id, &loaded.state, loaded.version)
                .map(Json)
                .ok_or_else(|| order_not_found(format!("order {id} did not exist then")))
        }
    }
}

async fn list_orders(State(app): State<Arc<OrdersApp>>) -> Json<Value> {
    let (orders, events_applied) = app.view.read(|m| (m.summaries(), m.events_applied)).await;
    Json(json!({ "orders": orders, "eventsApplied": events_applied }))
}

async fn history(
    State(app): State<Arc<OrdersApp>>,
    Path(id): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let events = app
        .history(&id, &query, || {
            order_not_found(format!("order {id} does not exist"))
        })
        .await?;
    Ok(Json(json!({ "orderId": id, "events": events })))
}

async fn replay(State(app): State<Arc<OrdersApp>>) -> Result<Json<Value>, Problem> {
    app.replay_response().await
}

async fn replay_status(State(app): State<Arc<OrdersApp>>) -> Json<Value> {
    app.replay_status_response().await
}
