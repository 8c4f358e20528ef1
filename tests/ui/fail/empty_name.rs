#[repliq::message(name = "")]
struct Tick {
    price: i64,
}

fn main() {}
