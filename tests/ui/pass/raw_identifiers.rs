// Raw identifiers are accepted; names in the fingerprint lose their `r#`.
#[repliq::message]
#[derive(Debug, PartialEq)]
pub struct r#struct {
    pub r#type: u8,
    pub r#match: String,
}

#[repliq::message]
pub enum r#enum {
    r#fn,
    r#loop { r#in: u32 },
}

fn main() {
    assert_eq!(<r#struct as repliq::Message>::NAME, "struct");
    assert_eq!(<r#enum as repliq::Message>::NAME, "enum");
    let value = r#struct { r#type: 7, r#match: "yes".into() };
    let bytes = repliq::to_bytes(&value).unwrap();
    assert_eq!(repliq::from_bytes::<r#struct>(&bytes).unwrap(), value);
    let _ = r#enum::r#loop { r#in: 1 };
    let _ = r#enum::r#fn;
}
