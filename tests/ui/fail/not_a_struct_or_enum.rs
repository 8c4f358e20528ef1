#[repliq::message]
fn handler() {}

fn main() {
    // The function is still emitted.
    handler();
}
