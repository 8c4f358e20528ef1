#[repliq::message]
union Bits {
    int: u32,
    float: f32,
}

fn main() {
    // The union is still emitted, so using it reports no further error.
    let _ = Bits { int: 1 };
}
