// Messages nest inside messages, inside containers too.
#[repliq::message(name = "book.Level")]
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    pub price: i64,
    pub qty: u64,
}

#[repliq::message(name = "book.Book")]
#[derive(Debug, PartialEq)]
pub struct Book {
    pub symbol: String,
    pub best: Option<Level>,
    pub bids: Vec<Level>,
    pub top: [Level; 2],
    pub at: repliq::Timestamp,
}

fn main() {
    let l = Level { price: 10, qty: 2 };
    let book = Book {
        symbol: "X".into(),
        best: Some(l.clone()),
        bids: vec![l.clone(), l.clone()],
        top: [l.clone(), l],
        at: repliq::Timestamp::from_nanos(5),
    };
    let bytes = repliq::to_bytes(&book).unwrap();
    assert_eq!(repliq::from_bytes::<Book>(&bytes).unwrap(), book);
}
