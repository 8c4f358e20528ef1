// Unit, tuple and struct variants in one enum; the user's own derives and doc comments stay.
/// An order-entry command.
#[repliq::message]
#[derive(Debug, Clone, PartialEq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub enum Command {
    /// Cancel everything.
    CancelAll,
    Cancel(u64),
    Replace { id: u64, price: i64, qty: Option<u32> },
}

fn main() {
    for c in [Command::CancelAll, Command::Cancel(4), Command::Replace { id: 1, price: -3, qty: None }] {
        let bytes = repliq::to_bytes(&c).unwrap();
        let archived = repliq::access::<Command>(&bytes).unwrap();
        assert_eq!(*archived, c);
        assert_eq!(repliq::deserialize::<Command>(archived).unwrap(), c);
    }
}
