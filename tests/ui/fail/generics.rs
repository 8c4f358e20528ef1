#[repliq::message]
struct Envelope<T> {
    body: T,
}

fn main() {}
