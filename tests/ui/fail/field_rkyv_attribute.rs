#[repliq::message]
struct Tick {
    #[rkyv(with = rkyv::with::Skip)]
    price: i64,
}

fn main() {}
