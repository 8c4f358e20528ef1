//! The types that `build.rs` generates from every file in `schemas/`: they compile with only
//! `repliq` as a dependency, round-trip through the slot serializer, have the fingerprints that
//! `repliq-codegen` computes without compiling, and interoperate with hand-written twins.

use std::collections::BTreeMap;

use repliq::{Fingerprint, Message, Timestamp};

mod generated {
    include!(concat!(env!("OUT_DIR"), "/schemas.rs"));
}
include!(concat!(env!("OUT_DIR"), "/codegen_fingerprints.rs"));

use generated::{market, orders, telemetry};

/// Hand-written types with the same definitions as the schemas.
mod twins {
    pub mod market {
        use repliq::Timestamp;

        #[repliq::message(name = "market.Side")]
        #[derive(Debug, Clone, PartialEq)]
        pub enum Side {
            Buy,
            Sell,
        }

        #[repliq::message(name = "market.Instrument")]
        #[derive(Debug, Clone, PartialEq)]
        pub struct Instrument {
            pub symbol: String,
            pub venue: [u8; 4],
        }

        #[repliq::message(name = "market.Tick")]
        #[derive(Debug, Clone, PartialEq)]
        pub struct Tick {
            pub instrument: Instrument,
            pub bid_price: i64,
            pub bid_size: u32,
            pub ask_price: i64,
            pub ask_size: u32,
            pub at: Timestamp,
        }

        #[repliq::message(name = "market.Trade")]
        #[derive(Debug, Clone, PartialEq)]
        pub struct Trade {
            pub instrument: Instrument,
            pub trade_id: u64,
            pub price: i64,
            pub size: u32,
            pub aggressor: Option<Side>,
            pub at: Timestamp,
        }

        #[repliq::message(name = "market.Level")]
        #[derive(Debug, Clone, PartialEq)]
        pub struct Level {
            pub price: i64,
            pub size: u64,
            pub orders: u32,
        }

        #[repliq::message(name = "market.BookSnapshot")]
        #[derive(Debug, Clone, PartialEq)]
        pub struct BookSnapshot {
            pub instrument: Instrument,
            pub bids: Vec<Level>,
            pub asks: Vec<Level>,
            pub sequence: u64,
            pub at: Timestamp,
        }
    }

    pub mod orders {
        use std::collections::BTreeMap;

        use super::market::{Instrument, Side};
        use repliq::Timestamp;

        #[repliq::message(name = "orders.TimeInForce")]
        #[derive(Debug, Clone, PartialEq)]
        pub enum TimeInForce {
            Day,
            GoodTillCancel,
            ImmediateOrCancel,
            GoodTill(Timestamp),
        }

        #[repliq::message(name = "orders.NewOrder")]
        #[derive(Debug, Clone, PartialEq)]
        pub struct NewOrder {
            pub client_order_id: u64,
            pub instrument: Instrument,
            pub side: Side,
            pub price: i64,
            pub quantity: u32,
            pub time_in_force: TimeInForce,
            pub tags: BTreeMap<String, String>,
        }

        #[repliq::message(name = "orders.OrderRequest")]
        #[derive(Debug, Clone, PartialEq)]
        pub enum OrderRequest {
            New(NewOrder),
            Cancel {
                client_order_id: u64,
                reason: Option<String>,
            },
            Replace {
                client_order_id: u64,
                new_price: i64,
                new_quantity: u32,
            },
        }
    }
}

fn instrument() -> market::Instrument {
    market::Instrument {
        symbol: "ACME".into(),
        venue: *b"XNAS",
    }
}

fn new_order() -> orders::NewOrder {
    orders::NewOrder {
        client_order_id: 42,
        instrument: instrument(),
        side: market::Side::Sell,
        price: 10_125,
        quantity: 300,
        time_in_force: orders::TimeInForce::GoodTill(Timestamp::from_nanos(
            1_700_000_000_000_000_000,
        )),
        tags: BTreeMap::from([("strategy".to_string(), "mm-3".to_string())]),
    }
}

/// Serializes, validates the archived bytes and deserializes back.
fn round_trip<T: Message + PartialEq + std::fmt::Debug>(value: &T) {
    let bytes = repliq::to_bytes(value).expect("serialize");
    let back: T = repliq::from_bytes(&bytes).expect("validate and deserialize");
    assert_eq!(&back, value);
}

#[test]
fn generated_types_round_trip() {
    let at = Timestamp::from_nanos(1_732_000_000_123_456_789);
    round_trip(&market::Tick {
        instrument: instrument(),
        bid_price: 10_120,
        bid_size: 500,
        ask_price: 10_130,
        ask_size: 700,
        at,
    });
    round_trip(&market::Trade {
        instrument: instrument(),
        trade_id: 9,
        price: 10_125,
        size: 100,
        aggressor: Some(market::Side::Buy),
        at,
    });
    round_trip(&market::BookSnapshot {
        instrument: instrument(),
        bids: vec![market::Level {
            price: 10_120,
            size: 500,
            orders: 3,
        }],
        asks: vec![
            market::Level {
                price: 10_130,
                size: 700,
                orders: 2,
            },
            market::Level {
                price: 10_140,
                size: 50,
                orders: 1,
            },
        ],
        sequence: 77,
        at,
    });
    for request in [
        orders::OrderRequest::New(new_order()),
        orders::OrderRequest::Cancel {
            client_order_id: 42,
            reason: Some("stale".into()),
        },
        orders::OrderRequest::Replace {
            client_order_id: 42,
            new_price: 10_126,
            new_quantity: 200,
        },
    ] {
        round_trip(&request);
    }
    round_trip(&orders::Execution {
        client_order_id: 42,
        filled: 100,
        leaves: 200,
        price: 10_125,
        at,
    });
    round_trip(&telemetry::Report {
        service: "gateway".into(),
        instance: "gw-0".into(),
        samples: vec![
            telemetry::Sample {
                name: "orders_total".into(),
                labels: BTreeMap::from([("venue".into(), "XNAS".into())]),
                value: telemetry::Value::Counter(12),
                at,
            },
            telemetry::Sample {
                name: "latency_seconds".into(),
                labels: BTreeMap::new(),
                value: telemetry::Value::Histogram {
                    count: 3,
                    sum: 0.5,
                    quantiles: vec![
                        telemetry::Quantile(0.5, 0.1),
                        telemetry::Quantile(0.99, 0.3),
                    ],
                },
                at,
            },
        ],
    });
    round_trip(&telemetry::Heartbeat);
    round_trip(&telemetry::LogEvent {
        level: telemetry::Level::Warn,
        target: "gateway::session".into(),
        message: "slow consumer".into(),
        fields: BTreeMap::new(),
        attachment: Some(vec![0, 1, 2, 255]),
        at,
    });
}

/// `(NAME, FINGERPRINT)` of a compiled message type.
fn compiled<T: Message>() -> (&'static str, u64) {
    (T::NAME, T::FINGERPRINT)
}

#[test]
fn codegen_fingerprints_match_the_macro() {
    let compiled = [
        compiled::<market::Side>(),
        compiled::<market::Instrument>(),
        compiled::<market::Tick>(),
        compiled::<market::Trade>(),
        compiled::<market::Level>(),
        compiled::<market::BookSnapshot>(),
        compiled::<orders::TimeInForce>(),
        compiled::<orders::NewOrder>(),
        compiled::<orders::OrderRequest>(),
        compiled::<orders::Execution>(),
        compiled::<telemetry::Level>(),
        compiled::<telemetry::Value>(),
        compiled::<telemetry::Quantile>(),
        compiled::<telemetry::Sample>(),
        compiled::<telemetry::Report>(),
        compiled::<telemetry::Heartbeat>(),
        compiled::<telemetry::LogEvent>(),
    ];
    let mut expected = CODEGEN_FINGERPRINTS.to_vec();
    expected.sort_unstable();
    let mut compiled = compiled.to_vec();
    compiled.sort_unstable();
    // Equal lists: every schema type is covered here, and codegen agrees with the macro on each.
    assert_eq!(compiled, expected);
    // Types of different packages with the same name stay distinct.
    assert_ne!(
        <market::Level as Fingerprint>::FINGERPRINT,
        <telemetry::Level as Fingerprint>::FINGERPRINT
    );
}

#[test]
fn generated_and_hand_written_twins_have_equal_fingerprints() {
    fn same<A: Message, B: Message>() {
        assert_eq!((A::NAME, A::FINGERPRINT), (B::NAME, B::FINGERPRINT));
    }
    same::<market::Side, twins::market::Side>();
    same::<market::Instrument, twins::market::Instrument>();
    same::<market::Tick, twins::market::Tick>();
    same::<market::Trade, twins::market::Trade>();
    same::<market::Level, twins::market::Level>();
    same::<market::BookSnapshot, twins::market::BookSnapshot>();
    same::<orders::TimeInForce, twins::orders::TimeInForce>();
    same::<orders::NewOrder, twins::orders::NewOrder>();
    same::<orders::OrderRequest, twins::orders::OrderRequest>();
}

#[test]
fn generated_producer_and_hand_written_consumer_interoperate() {
    let sent = orders::OrderRequest::New(new_order());
    let bytes = repliq::to_bytes(&sent).expect("serialize");
    // The consumer reads the producer's bytes in place with its own type...
    let archived = repliq::access::<twins::orders::OrderRequest>(&bytes).expect("validate");
    let twins::orders::ArchivedOrderRequest::New(order) = archived else {
        panic!("expected a new order");
    };
    assert_eq!(order.client_order_id.to_native(), 42);
    assert_eq!(order.instrument.symbol.as_str(), "ACME");
    // ...and gets the same value when it deserializes.
    let received: twins::orders::OrderRequest = repliq::deserialize(archived).expect("deserialize");
    let twins::orders::OrderRequest::New(order) = received else {
        panic!("expected a new order");
    };
    assert_eq!(order.side, twins::market::Side::Sell);
    assert_eq!(order.tags.get("strategy").map(String::as_str), Some("mm-3"));
    assert_eq!(
        order.time_in_force,
        twins::orders::TimeInForce::GoodTill(Timestamp::from_nanos(1_700_000_000_000_000_000))
    );
}

#[test]
fn generated_producer_and_hand_written_consumer_share_a_queue() {
    use repliq::{JournalQueue, QueueError};

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("order-requests");
    let sent = [
        orders::OrderRequest::New(new_order()),
        orders::OrderRequest::Cancel {
            client_order_id: 42,
            reason: None,
        },
    ];
    let mut producer = JournalQueue::<orders::OrderRequest>::new(&path, 16).expect("create queue");
    for request in &sent {
        producer.enqueue(request).expect("enqueue");
    }

    // A consumer whose type is written by hand opens the queue: same name, same fingerprint.
    let mut consumer =
        JournalQueue::<twins::orders::OrderRequest>::open(&path).expect("open as twin");
    let Some(twins::orders::OrderRequest::New(order)) = consumer.dequeue().expect("dequeue") else {
        panic!("expected the new order first");
    };
    assert_eq!(order.client_order_id, 42);
    assert_eq!(order.side, twins::market::Side::Sell);
    assert_eq!(
        consumer.dequeue().expect("dequeue"),
        Some(twins::orders::OrderRequest::Cancel {
            client_order_id: 42,
            reason: None
        })
    );
    assert_eq!(consumer.dequeue().expect("dequeue"), None);

    // Any other type is refused on open.
    match JournalQueue::<market::Trade>::open(&path) {
        Err(QueueError::TypeMismatch { found_name, .. }) => {
            assert_eq!(found_name, "orders.OrderRequest");
        }
        other => panic!("expected a type mismatch, got {other:?}"),
    }
}
