#[repliq::message(name = "a.Tick", name = "b.Tick")]
struct Tick {
    price: i64,
}

fn main() {}
