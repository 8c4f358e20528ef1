//! Types generated from `schemas/` (by this crate's `build.rs`) used end to end: a gateway
//! enqueues order requests of the generated type `orders::OrderRequest`, and a risk check reads
//! them back in place (zero-copy, validated). Opening the queue with another type is refused,
//! because the queue records the message type's name and fingerprint.
//!
//! ```text
//! cargo run -p repliq-examples --bin codegen_orders
//! ```

use std::collections::BTreeMap;

use repliq::{JournalQueue, QueueError, Timestamp};

// `schemas.rs` mounts every schema package as a module: `market`, `orders`, `telemetry`.
include!(concat!(env!("OUT_DIR"), "/schemas.rs"));

use orders::{ArchivedOrderRequest, NewOrder, OrderRequest, TimeInForce};

fn requests() -> Vec<OrderRequest> {
    let instrument = market::Instrument {
        symbol: "ACME".into(),
        venue: *b"XNAS",
    };
    vec![
        OrderRequest::New(NewOrder {
            client_order_id: 1,
            instrument: instrument.clone(),
            side: market::Side::Buy,
            price: 10_120,
            quantity: 500,
            time_in_force: TimeInForce::Day,
            tags: BTreeMap::from([("strategy".into(), "mean-revert".into())]),
        }),
        OrderRequest::New(NewOrder {
            client_order_id: 2,
            instrument,
            side: market::Side::Sell,
            price: 10_180,
            quantity: 200,
            time_in_force: TimeInForce::GoodTill(Timestamp::now()),
            tags: BTreeMap::new(),
        }),
        OrderRequest::Replace {
            client_order_id: 1,
            new_price: 10_125,
            new_quantity: 400,
        },
        OrderRequest::Cancel {
            client_order_id: 2,
            reason: Some("price moved".into()),
        },
    ]
}

/// One line per request, read from the archived bytes in the queue's mapping.
fn describe(request: &ArchivedOrderRequest) -> String {
    match request {
        ArchivedOrderRequest::New(order) => format!(
            "new     #{} {:?} {} {} @ {}",
            order.client_order_id, order.side, order.quantity, order.instrument.symbol, order.price
        ),
        ArchivedOrderRequest::Replace {
            client_order_id,
            new_price,
            new_quantity,
        } => format!("replace #{client_order_id} -> {new_quantity} @ {new_price}"),
        ArchivedOrderRequest::Cancel {
            client_order_id,
            reason,
        } => format!(
            "cancel  #{client_order_id} ({})",
            reason.as_ref().map_or("no reason", |r| r.as_str())
        ),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("repliq-codegen-orders-{}", std::process::id()));
    let path = dir.join("order-requests");
    let result = run(&path);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    // The gateway: produces the generated type.
    let mut gateway = JournalQueue::<OrderRequest>::new(path, 1024)?;
    for request in requests() {
        gateway.enqueue(&request)?;
    }
    println!(
        "enqueued {} requests of `{}`",
        requests().len(),
        <OrderRequest as repliq::Message>::NAME
    );

    // The risk check: reads each request in place.
    let mut risk = JournalQueue::<OrderRequest>::open(path)?;
    while let Some(line) = risk.read(describe)? {
        println!("  {line}");
    }

    // A consumer built against another type cannot open the queue by mistake.
    match JournalQueue::<market::Trade>::open(path) {
        Err(QueueError::TypeMismatch { found_name, .. }) => {
            println!("opening it as `market.Trade` is refused: the queue holds `{found_name}`");
            Ok(())
        }
        Err(other) => Err(other.into()),
        Ok(_) => Err("a queue of order requests opened as trades".into()),
    }
}
