// A plain struct, not marked #[repliq::message].
struct Price {
    mantissa: i64,
}

#[repliq::message]
struct Tick {
    symbol: String,
    price: Price,
}

fn main() {}

// The diagnostic that matters, "`Price` cannot be a field of a repliq message" spanned on the
// field's type, comes first: the macro emits a where-clause check before the derives. rkyv's and
// serde's derives then report the same fault once per derive at the attribute; rustc offers no
// way to silence those.
