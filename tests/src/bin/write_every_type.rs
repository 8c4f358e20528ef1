//! `write_every_type DIR [COUNT]`: writes a queue of `sink.Everything` messages (every supported
//! field type) for `.ci/python-reader.sh`, which prints it with `repliq cat` (built without this
//! type) and with the Python reader and compares.
//!
//! `write_every_type --demo DIR`: writes three readable `fixture.Order`s (the demo queue of
//! `docs/SELF_DESCRIBING.md`).
//!
//! `write_every_type --orders DIR COUNT`: writes COUNT `fixture.Order`s (the Python reader's
//! throughput measurement, `clients/python/bench.py`).

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--demo") {
        let dir = args.nth(1).expect("usage: write_every_type --demo DIR");
        let mut q = repliq::JournalQueue::<repliq_tests::Order>::new(&dir, 1000).expect("queue");
        let orders = [
            (1, "EURUSD", Some(108_750), vec![(1, 500)]),
            (2, "USDJPY", None, vec![(1, 200), (2, 300)]),
            (3, "GBPUSD", Some(126_020), vec![]),
        ];
        for (id, symbol, price, legs) in orders {
            let order = repliq_tests::Order {
                id,
                symbol: symbol.into(),
                price,
                legs,
            };
            q.enqueue(&order).expect("enqueue");
        }
        return;
    }
    if args.peek().map(String::as_str) == Some("--orders") {
        let dir = args
            .nth(1)
            .expect("usage: write_every_type --orders DIR COUNT");
        let count: u64 = args
            .next()
            .and_then(|c| c.parse().ok())
            .expect("usage: write_every_type --orders DIR COUNT");
        let mut q = repliq::QueueOptions::new()
            .capacity(count.max(1))
            .producer()
            .create::<repliq_tests::Order>(&dir)
            .expect("queue");
        for id in 0..count {
            let order = repliq_tests::Order {
                id,
                symbol: ["EURUSD", "USDJPY", "GBPUSD"][(id % 3) as usize].into(),
                price: (id % 4 != 0).then_some(100_000 + (id % 1000) as i64),
                legs: (0..id % 3).map(|v| (v as u32 + 1, 100 * id)).collect(),
            };
            q.enqueue(&order).expect("enqueue");
        }
        eprintln!("wrote {count} orders to {dir}");
        return;
    }
    let dir = args.next().expect("usage: write_every_type DIR [COUNT]");
    let count = args
        .next()
        .map_or(200, |c| c.parse().expect("COUNT is a number"));
    let values = repliq_tests::kitchen_sink::write_sample_queue(dir.as_ref(), count);
    eprintln!("wrote {} messages to {dir}", values.len());
}
