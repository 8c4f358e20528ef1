#[repliq::message]
struct Callback {
    id: u64,
    handler: Vec<Box<dyn Fn(u64) + Send>>,
}

fn main() {}
