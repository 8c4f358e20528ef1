//! A typed message, serialized with rkyv into an aligned buffer, read back in place (zero-copy,
//! validated), and rendered as JSON through its serde derive.
//!
//! `cargo run -p repliq-examples --bin roundtrip`

use repliq::{Fingerprint, Message, Timestamp};

/// One trade on a venue.
#[repliq::message(name = "market.Trade")]
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    pub symbol: String,
    pub price: i64,
    pub qty: u32,
    pub side: Side,
    pub at: Timestamp,
}

/// Who initiated the trade.
#[repliq::message(name = "market.Side")]
#[derive(Debug, Clone, Copy, PartialEq)]
#[rkyv(derive(Debug))]
pub enum Side {
    Buy,
    Sell,
}

fn main() -> repliq::Result<()> {
    let trade = Trade {
        symbol: "ACME".into(),
        price: 101_250,
        qty: 300,
        side: Side::Buy,
        at: Timestamp::now(),
    };

    let bytes = repliq::to_bytes(&trade)?;
    let archived = repliq::access::<Trade>(&bytes)?; // validated, no copy
    println!(
        "{} ({} bytes archived, fingerprint {:#018x})",
        Trade::NAME,
        bytes.len(),
        Trade::FINGERPRINT
    );
    println!(
        "read in place: {} {} @ {} ({:?})",
        archived.symbol, archived.qty, archived.price, archived.side
    );
    let back: Trade = repliq::deserialize(archived)?;
    assert_eq!(back, trade);
    println!(
        "as JSON: {}",
        serde_json::to_string(&back).map_err(|e| repliq::QueueError::Other(e.to_string()))?
    );
    Ok(())
}
