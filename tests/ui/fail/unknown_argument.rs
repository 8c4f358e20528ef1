#[repliq::message(name = "Tick", version = 2)]
struct Tick {
    price: i64,
}

fn main() {}
