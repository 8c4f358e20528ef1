//! `schema.json` and descriptor JSON from a file nobody checked: arbitrary text parses or is
//! refused with an error; a descriptor that parses computes its fingerprint and layout, and a
//! schema that parses round-trips through its own rendering.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repliq::descriptor::{Schema, Type, check_json_encodable};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(schema) = Schema::from_json(text) {
        let again = Schema::from_json(&schema.to_json_string()).expect("a schema round-trips");
        assert_eq!(again, schema);
    }
    if let Ok(ty) = serde_json::from_str::<Type>(text) {
        let _ = ty.fingerprint();
        let _ = ty.layout();
        let _ = check_json_encodable(&ty);
    }
});
