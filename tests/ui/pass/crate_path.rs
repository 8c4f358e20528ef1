// `crate = path` points the generated code at a re-export of repliq (for frameworks that wrap it).
mod framework {
    pub use repliq as queue;
}

#[repliq::message(crate = crate::framework::queue, name = "wrapped.Ping")]
#[derive(Debug, PartialEq)]
struct Ping(u64);

fn main() {
    use repliq::Message;
    assert_eq!(Ping::NAME, "wrapped.Ping");
    let bytes = repliq::to_bytes(&Ping(3)).unwrap();
    assert_eq!(repliq::from_bytes::<Ping>(&bytes).unwrap(), Ping(3));
}
