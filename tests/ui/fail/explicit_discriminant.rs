#[repliq::message]
enum Side {
    Buy = 1,
    Sell = 2,
}

fn main() {
    let _ = Side::Buy;
}
