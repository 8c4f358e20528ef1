#[repliq::message]
#[rkyv(derive(Debug), as = Tick)]
struct Tick {
    price: i64,
}

fn main() {}
