//! The order domain's rules, one scenario each, with the aggregate test kit; and the schema
//! upcast of `OrderCreated` v1 through a real embedded store.

use std::sync::Arc;

use factlog_aggregate::testkit::given;
use factlog_aggregate::{DecodeError, LoadError, Repository};
use factlog_examples::orders::{
    ItemAdded, Order, OrderCommand, OrderCreated, OrderError, OrderEvent, OrderItem, OrderShipped,
    OrderStatus, PaymentCaptured, TOTAL_CENTS_MAX,
};
use factlog_log::EmbeddedStore;
use factlog_store::{EventStore, ExpectedVersion, NewEvent, StreamName};
use serde_json::json;

fn create(order_id: &str) -> OrderCommand {
    OrderCommand::Create {
        order_id: order_id.into(),
        customer: "ada".into(),
        currency: "EUR".into(),
    }
}

fn created(order_id: &str) -> OrderEvent {
    OrderEvent::Created(OrderCreated {
        order_id: order_id.into(),
        customer: "ada".into(),
        currency: "EUR".into(),
    })
}

fn add_item(sku: &str, quantity: i64, unit_price: i64) -> OrderCommand {
    OrderCommand::AddItem {
        sku: sku.into(),
        quantity,
        unit_price,
    }
}

fn item_added(sku: &str, quantity: u64, unit_price: u64) -> OrderEvent {
    OrderEvent::ItemAdded(ItemAdded {
        sku: sku.into(),
        quantity,
        unit_price,
    })
}

fn pay(amount: i64) -> OrderCommand {
    OrderCommand::CapturePayment { amount }
}

fn paid(amount: u64) -> OrderEvent {
    OrderEvent::PaymentCaptured(PaymentCaptured { amount })
}

fn ship(carrier: &str) -> OrderCommand {
    OrderCommand::Ship {
        carrier: carrier.into(),
    }
}

fn shipped(carrier: &str) -> OrderEvent {
    OrderEvent::Shipped(OrderShipped {
        carrier: carrier.into(),
    })
}

/// An order with two lines: 2 x 250 + 1 x 1000 = 1500 cents.
fn with_items() -> Vec<OrderEvent> {
    vec![
        created("o-1"),
        item_added("apple", 2, 250),
        item_added("pear", 1, 1000),
    ]
}

fn paid_order() -> Vec<OrderEvent> {
    let mut events = with_items();
    events.push(paid(1500));
    events
}

fn shipped_order() -> Vec<OrderEvent> {
    let mut events = paid_order();
    events.push(shipped("dhl"));
    events
}

#[test]
fn an_order_is_created_once() {
    let state = given::<Order>([])
        .when(create("o-1"))
        .then([created("o-1")]);
    assert_eq!(state.status, Some(OrderStatus::Created));
    assert_eq!(state.currency, "EUR");
    assert_eq!(state.total, 0);

    given::<Order>([created("o-1")])
        .when(create("o-1"))
        .then_error(OrderError::OrderExists("o-1".into()));
    given::<Order>(shipped_order())
        .when(create("o-1"))
        .then_error(OrderError::OrderExists("o-1".into()));
}

#[test]
fn an_order_needs_an_id_a_customer_and_a_currency() {
    let invalid = |order_id: &str, customer: &str, currency: &str| {
        given::<Order>([])
            .when(OrderCommand::Create {
                order_id: order_id.into(),
                customer: customer.into(),
                currency: currency.into(),
            })
            .then_error_matches(|e| matches!(e, OrderError::InvalidOrder(_)));
    };
    invalid("", "ada", "EUR");
    invalid("o-1", " ", "EUR");
    invalid("o-1", "ada", "");
    invalid("o-1", "ada", "eur");
    invalid("o-1", "ada", "EURO");
    given::<Order>([])
        .when(OrderCommand::Create {
            order_id: "o-1".into(),
            customer: "ada".into(),
            currency: "USD".into(),
        })
        .then([OrderEvent::Created(OrderCreated {
            order_id: "o-1".into(),
            customer: "ada".into(),
            currency: "USD".into(),
        })]);
}

#[test]
fn commands_on_a_missing_order_are_not_found() {
    for command in [add_item("apple", 1, 100), pay(0), pay(100), ship("dhl")] {
        given::<Order>([])
            .when(command)
            .then_error(OrderError::OrderNotFound);
    }
}

#[test]
fn items_are_added_to_a_created_order_and_sum_into_the_total() {
    let state = given::<Order>([created("o-1")])
        .when(add_item("apple", 2, 250))
        .then([item_added("apple", 2, 250)]);
    assert_eq!(state.total, 500);
    let state = given::<Order>(with_items())
        .when(add_item("apple", 3, 0))
        .then([item_added("apple", 3, 0)]);
    assert_eq!(state.total, 1500, "a free item adds nothing to the total");
    assert_eq!(
        state.items,
        vec![
            OrderItem {
                sku: "apple".into(),
                quantity: 2,
                unit_price: 250
            },
            OrderItem {
                sku: "pear".into(),
                quantity: 1,
                unit_price: 1000
            },
            OrderItem {
                sku: "apple".into(),
                quantity: 3,
                unit_price: 0
            },
        ]
    );
}

#[test]
fn an_item_needs_a_quantity_of_one_or_more() {
    for quantity in [0, -1, i64::MIN] {
        given::<Order>([created("o-1")])
            .when(add_item("apple", quantity, 100))
            .then_error(OrderError::InvalidQuantity(quantity));
    }
}

#[test]
fn an_item_needs_a_price_of_zero_or_more_and_a_sku() {
    for unit_price in [-1, i64::MIN] {
        given::<Order>([created("o-1")])
            .when(add_item("apple", 1, unit_price))
            .then_error(OrderError::InvalidUnitPrice(unit_price));
    }
    given::<Order>([created("o-1")])
        .when(add_item(" ", 1, 100))
        .then_error(OrderError::EmptySku);
}

#[test]
fn a_total_that_would_overflow_is_refused_not_wrapped() {
    // quantity x unit price overflows u64.
    given::<Order>([created("o-1")])
        .when(add_item("gold", i64::MAX, i64::MAX))
        .then_error(OrderError::TotalTooLarge);
    // The line fits, the sum with the total does not.
    let max = i64::MAX;
    let state = given::<Order>([created("o-1")])
        .when(add_item("gold", 1, max))
        .then([item_added("gold", 1, TOTAL_CENTS_MAX)]);
    assert_eq!(state.total, TOTAL_CENTS_MAX);
    given::<Order>([created("o-1"), item_added("gold", 1, TOTAL_CENTS_MAX)])
        .when(add_item("pin", 1, 1))
        .then_error(OrderError::TotalTooLarge);
}

#[test]
fn items_cannot_be_added_after_payment_or_shipping() {
    given::<Order>(paid_order())
        .when(add_item("apple", 1, 100))
        .then_error(OrderError::OrderPaid("o-1".into()));
    given::<Order>(shipped_order())
        .when(add_item("apple", 1, 100))
        .then_error(OrderError::OrderShipped("o-1".into()));
}

#[test]
fn the_payment_captures_exactly_the_total() {
    let state = given::<Order>(with_items())
        .when(pay(1500))
        .then([paid(1500)]);
    assert_eq!(state.status, Some(OrderStatus::Paid));
    assert_eq!(state.paid, Some(1500));
    // An order of free items is paid with 0.
    given::<Order>([created("o-1"), item_added("sticker", 5, 0)])
        .when(pay(0))
        .then([paid(0)]);
}

#[test]
fn a_payment_of_another_amount_is_refused() {
    for amount in [0, 1499, 1501, -1500, i64::MAX] {
        given::<Order>(with_items())
            .when(pay(amount))
            .then_error(OrderError::WrongAmount {
                total: 1500,
                amount,
            });
    }
}

#[test]
fn an_order_without_items_cannot_be_paid() {
    for amount in [0, 100] {
        given::<Order>([created("o-1")])
            .when(pay(amount))
            .then_error(OrderError::NoItems("o-1".into()));
    }
}

#[test]
fn an_order_is_paid_only_once() {
    given::<Order>(paid_order())
        .when(pay(1500))
        .then_error(OrderError::OrderPaid("o-1".into()));
    given::<Order>(shipped_order())
        .when(pay(1500))
        .then_error(OrderError::OrderShipped("o-1".into()));
}

#[test]
fn a_paid_order_is_shipped() {
    let state = given::<Order>(paid_order())
        .when(ship("dhl"))
        .then([shipped("dhl")]);
    assert_eq!(state.status, Some(OrderStatus::Shipped));
    assert_eq!(state.carrier.as_deref(), Some("dhl"));
    given::<Order>(paid_order())
        .when(ship(""))
        .then_error(OrderError::InvalidCarrier);
}

#[test]
fn an_order_is_not_shipped_before_payment() {
    given::<Order>([created("o-1")])
        .when(ship("dhl"))
        .then_error(OrderError::OrderNotPaid("o-1".into()));
    given::<Order>(with_items())
        .when(ship("dhl"))
        .then_error(OrderError::OrderNotPaid("o-1".into()));
}

#[test]
fn an_order_is_shipped_only_once() {
    given::<Order>(shipped_order())
        .when(ship("ups"))
        .then_error(OrderError::OrderShipped("o-1".into()));
}

#[test]
fn the_whole_lifecycle_folds_into_the_state() {
    let state = given::<Order>(shipped_order()).state().clone();
    assert_eq!(state.order_id, "o-1");
    assert_eq!(state.customer, "ada");
    assert_eq!(state.items.len(), 2);
    assert_eq!(state.total, 1500);
    assert_eq!(state.paid, Some(1500));
    assert_eq!(state.status, Some(OrderStatus::Shipped));
}

/// Appends raw events (as an older version of the code wrote them) to `order-{id}`.
async fn append_raw(store: &EmbeddedStore, id: &str, events: Vec<NewEvent>) {
    let stream = StreamName::new(format!("order-{id}")).unwrap();
    store
        .append(&stream, ExpectedVersion::Any, events)
        .await
        .unwrap();
}

fn raw(event_type: &str, schema_version: u32, data: serde_json::Value) -> NewEvent {
    NewEvent::json(event_type, &data)
        .unwrap()
        .with_schema_version(schema_version)
}

#[tokio::test]
async fn an_order_created_at_schema_v1_loads_in_euros() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path(), Default::default()).unwrap());
    append_raw(
        &store,
        "old",
        vec![
            raw(
                "OrderCreated",
                1,
                json!({"orderId": "old", "customer": "grace"}),
            ),
            raw(
                "ItemAdded",
                1,
                json!({"sku": "apple", "quantity": 2, "unitPrice": 250}),
            ),
        ],
    )
    .await;
    let orders = Repository::<Order>::new(store.clone());

    let loaded = orders.load("old").await.unwrap();
    assert_eq!(loaded.version, Some(1));
    assert_eq!(loaded.state.currency, "EUR");
    assert_eq!(loaded.state.customer, "grace");
    assert_eq!(loaded.state.total, 500);
    let history = orders.history("old", 0, 10).await.unwrap();
    assert_eq!(history[0].recorded.schema_version, 1);
    assert!(matches!(
        &history[0].event,
        OrderEvent::Created(OrderCreated { currency, .. }) if currency == "EUR"
    ));

    // The old order takes new commands, and new events are written at the current version.
    let executed = orders.execute("old", pay(500)).await.unwrap();
    assert_eq!(executed.state.status, Some(OrderStatus::Paid));
    store.close();
}

#[tokio::test]
async fn an_unknown_schema_version_is_a_decode_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path(), Default::default()).unwrap());
    append_raw(
        &store,
        "future",
        vec![raw(
            "OrderCreated",
            3,
            json!({"orderId": "future", "customer": "ada", "currency": "EUR"}),
        )],
    )
    .await;
    // A v1 payload that is not even an object: the upcast refuses it rather than panicking.
    append_raw(
        &store,
        "broken",
        vec![raw("OrderCreated", 1, json!(["not", "an", "object"]))],
    )
    .await;
    let orders = Repository::<Order>::new(store.clone());

    match orders.load("future").await {
        Err(LoadError::Decode {
            version: 0,
            source:
                DecodeError::UnknownVersion {
                    schema_version: 3,
                    current_version: 2,
                    ..
                },
            ..
        }) => {}
        other => panic!("expected a decode error for OrderCreated v3, got {other:?}"),
    }
    match orders.load("broken").await {
        Err(LoadError::Decode {
            source: DecodeError::Upcast {
                from_version: 1, ..
            },
            ..
        }) => {}
        other => panic!("expected an upcast error, got {other:?}"),
    }
    store.close();
}
