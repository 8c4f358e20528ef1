#[repliq::message(name = Tick)]
struct Tick {
    price: i64,
}

fn main() {}
