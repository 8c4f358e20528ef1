// Visibility of the type and its fields is kept, also for the archived type.
mod inner {
    #[repliq::message]
    pub struct Public {
        pub open: u32,
        pub(crate) crate_only: u32,
        private: u32,
    }

    impl Public {
        pub fn new(open: u32) -> Self {
            Public { open, crate_only: open, private: open }
        }
        pub fn private(&self) -> u32 {
            self.private
        }
    }

    #[repliq::message]
    pub(crate) struct CrateOnly(pub u8);
}

fn main() {
    let p = inner::Public::new(3);
    assert_eq!(p.open + p.crate_only + p.private(), 9);
    let bytes = repliq::to_bytes(&p).unwrap();
    let archived: &inner::ArchivedPublic = repliq::access::<inner::Public>(&bytes).unwrap();
    assert_eq!(archived.open, 3);
    let _ = inner::CrateOnly(1).0;
}
