// A message enum whose variant holds a plain enum (not marked #[repliq::message]) inside a Vec:
// the first error names `Vec<Side>` and points at the variant's field, before the derives' noise.
#[derive(Debug, Clone, Copy)]
enum Side {
    Buy,
    Sell,
}

#[repliq::message(name = "orders.Request")]
enum Request {
    New { id: u64, sides: Vec<Side> },
    Cancel { id: u64 },
}

fn main() {}
