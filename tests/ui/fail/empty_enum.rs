#[repliq::message]
enum Never {}

fn main() {}
