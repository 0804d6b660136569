//! The order lifecycle domain: create, add items, capture the payment, ship.
//!
//! An order moves one way: `created` (items may be added) -> `paid` (the exact total was
//! captured) -> `shipped`. Amounts are integers in minor units (cents), so no rounding ever
//! happens, and every sum is checked: a total that would not fit is refused, never wrapped.
//!
//! `OrderCreated` is at schema version 2; version 1 had no currency (every order was in euros),
//! and an upcast reads those events as version 2 with currency `EUR`.

use std::sync::OnceLock;

use factlog_aggregate::{Aggregate, DomainEvent, EventSchema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The currency of an order created without one, and of every order of schema version 1.
pub const DEFAULT_CURRENCY: &str = "EUR";

/// The largest order total, in cents: totals stay within `i64` so that any client (and a
/// payment command, whose amount is an `i64`) can state them.
pub const TOTAL_CENTS_MAX: u64 = i64::MAX as u64;

/// Where an order is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Created; items can be added until it is paid.
    Created,
    /// Its total was captured; it can be shipped.
    Paid,
    /// Shipped; it takes no more commands.
    Shipped,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    pub sku: String,
    pub quantity: u64,
    /// The price of one unit, in cents.
    pub unit_price: u64,
}

/// An order's state, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Set by `OrderCreated`; an order without a status does not exist.
    pub status: Option<OrderStatus>,
    pub order_id: String,
    pub customer: String,
    pub currency: String,
    /// One line per `ItemAdded`, in the order they were added.
    pub items: Vec<OrderItem>,
    /// The sum of quantity x unit price over the items, in cents.
    pub total: u64,
    /// Set by `PaymentCaptured`.
    pub paid: Option<u64>,
    /// Set by `OrderShipped`.
    pub carrier: Option<String>,
}

impl Order {
    pub fn exists(&self) -> bool {
        self.status.is_some()
    }
}

/// What a caller asks of an order. Numbers are as the caller sent them (signed), so that the
/// domain itself refuses a negative quantity or price with a business error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    Create {
        order_id: String,
        customer: String,
        currency: String,
    },
    AddItem {
        sku: String,
        quantity: i64,
        unit_price: i64,
    },
    CapturePayment {
        amount: i64,
    },
    Ship {
        carrier: String,
    },
}

/// Schema version 2 (version 1 had no `currency`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    pub order_id: String,
    pub customer: String,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemAdded {
    pub sku: String,
    pub quantity: u64,
    pub unit_price: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCaptured {
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderShipped {
    pub carrier: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum OrderEvent {
    Created(OrderCreated),
    ItemAdded(ItemAdded),
    PaymentCaptured(PaymentCaptured),
    Shipped(OrderShipped),
}

/// Reads an `OrderCreated` v1 payload as v2: orders without a currency were in euros.
fn order_created_v1_to_v2(mut payload: Value) -> Result<Value, String> {
    let object = payload
        .as_object_mut()
        .ok_or("an OrderCreated v1 payload is a JSON object")?;
    object
        .entry("currency")
        .or_insert_with(|| DEFAULT_CURRENCY.into());
    Ok(payload)
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> &'static str {
        match self {
            OrderEvent::Created(_) => "OrderCreated",
            OrderEvent::ItemAdded(_) => "ItemAdded",
            OrderEvent::PaymentCaptured(_) => "PaymentCaptured",
            OrderEvent::Shipped(_) => "OrderShipped",
        }
    }

    fn schema() -> &'static EventSchema<Self> {
        static SCHEMA: OnceLock<EventSchema<OrderEvent>> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            EventSchema::new()
                .event("OrderCreated", 2, OrderEvent::Created)
                .upcast("OrderCreated", 1, order_created_v1_to_v2)
                .event("ItemAdded", 1, OrderEvent::ItemAdded)
                .event("PaymentCaptured", 1, OrderEvent::PaymentCaptured)
                .event("OrderShipped", 1, OrderEvent::Shipped)
        })
    }
}

/// Why an order refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("the order does not exist")]
    OrderNotFound,
    #[error("order {0} already exists")]
    OrderExists(String),
    #[error("invalid order: {0}")]
    InvalidOrder(&'static str),
    #[error("a quantity must be at least 1, not {0}")]
    InvalidQuantity(i64),
    #[error("a unit price must be 0 or more cents, not {0}")]
    InvalidUnitPrice(i64),
    #[error("an item needs a non-empty sku")]
    EmptySku,
    #[error("the order total would exceed {TOTAL_CENTS_MAX} cents")]
    TotalTooLarge,
    #[error("order {0} is paid; its items cannot change and it cannot be paid again")]
    OrderPaid(String),
    #[error("order {0} is not paid; only a paid order can be shipped")]
    OrderNotPaid(String),
    #[error("order {0} is shipped; it takes no more commands")]
    OrderShipped(String),
    #[error("order {0} has no items; an order is paid once it has at least one")]
    NoItems(String),
    #[error("the order total is {total} cents; the payment of {amount} does not match it")]
    WrongAmount { total: u64, amount: i64 },
    #[error("a shipment needs a non-empty carrier")]
    InvalidCarrier,
}

fn valid_currency(currency: &str) -> bool {
    currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())
}

impl Aggregate for Order {
    const CATEGORY: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn handle(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        let id = || self.order_id.clone();
        if let OrderCommand::Create {
            order_id,
            customer,
            currency,
        } = command
        {
            if self.exists() {
                return Err(OrderError::OrderExists(id()));
            }
            if order_id.is_empty() {
                return Err(OrderError::InvalidOrder("the order id is empty"));
            }
            if customer.trim().is_empty() {
                return Err(OrderError::InvalidOrder("the customer is empty"));
            }
            if !valid_currency(currency) {
                return Err(OrderError::InvalidOrder(
                    "a currency is three upper-case letters (ISO 4217), such as EUR",
                ));
            }
            return Ok(vec![OrderEvent::Created(OrderCreated {
                order_id: order_id.clone(),
                customer: customer.clone(),
                currency: currency.clone(),
            })]);
        }
        let Some(status) = self.status else {
            return Err(OrderError::OrderNotFound);
        };
        if status == OrderStatus::Shipped {
            return Err(OrderError::OrderShipped(id()));
        }
        match command {
            OrderCommand::Create { .. } => unreachable!("handled above"),
            OrderCommand::AddItem {
                sku,
                quantity,
                unit_price,
            } => {
                if status == OrderStatus::Paid {
                    return Err(OrderError::OrderPaid(id()));
                }
                if sku.trim().is_empty() {
                    return Err(OrderError::EmptySku);
                }
                let quantity = u64::try_from(*quantity)
                    .ok()
                    .filter(|q| *q >= 1)
                    .ok_or(OrderError::InvalidQuantity(*quantity))?;
                let unit_price = u64::try_from(*unit_price)
                    .map_err(|_| OrderError::InvalidUnitPrice(*unit_price))?;
                quantity
                    .checked_mul(unit_price)
                    .and_then(|line| line.checked_add(self.total))
                    .filter(|total| *total <= TOTAL_CENTS_MAX)
                    .ok_or(OrderError::TotalTooLarge)?;
                Ok(vec![OrderEvent::ItemAdded(ItemAdded {
                    sku: sku.clone(),
                    quantity,
                    unit_price,
                })])
            }
            OrderCommand::CapturePayment { amount } => {
                if status == OrderStatus::Paid {
                    return Err(OrderError::OrderPaid(id()));
                }
                if self.items.is_empty() {
                    return Err(OrderError::NoItems(id()));
                }
                match u64::try_from(*amount) {
                    Ok(amount) if amount == self.total => {
                        Ok(vec![OrderEvent::PaymentCaptured(PaymentCaptured {
                            amount,
                        })])
                    }
                    _ => Err(OrderError::WrongAmount {
                        total: self.total,
                        amount: *amount,
                    }),
                }
            }
            OrderCommand::Ship { carrier } => {
                if status != OrderStatus::Paid {
                    return Err(OrderError::OrderNotPaid(id()));
                }
                if carrier.trim().is_empty() {
                    return Err(OrderError::InvalidCarrier);
                }
                Ok(vec![OrderEvent::Shipped(OrderShipped {
                    carrier: carrier.clone(),
                })])
            }
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Created(e) => {
                self.status = Some(OrderStatus::Created);
                self.order_id = e.order_id.clone();
                self.customer = e.customer.clone();
                self.currency = e.currency.clone();
            }
            OrderEvent::ItemAdded(e) => {
                // `handle` keeps the total in range; saturating keeps `apply` total even for
                // events written by other code.
                let line = e.quantity.saturating_mul(e.unit_price);
                self.total = self.total.saturating_add(line);
                self.items.push(OrderItem {
                    sku: e.sku.clone(),
                    quantity: e.quantity,
                    unit_price: e.unit_price,
                });
            }
            OrderEvent::PaymentCaptured(e) => {
                self.status = Some(OrderStatus::Paid);
                self.paid = Some(e.amount);
            }
            OrderEvent::Shipped(e) => {
                self.status = Some(OrderStatus::Shipped);
                self.carrier = Some(e.carrier.clone());
            }
        }
    }
}
