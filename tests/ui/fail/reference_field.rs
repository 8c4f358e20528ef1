#[repliq::message]
struct Borrowed {
    id: u64,
    name: &'static str,
}

fn main() {}
