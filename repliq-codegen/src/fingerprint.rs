//! Schema fingerprints, computed without compiling: the same values as `repliq::Fingerprint`
//! (`repliq/src/fingerprint.rs`, algorithm version 1) gives the generated types.

use crate::model::{Body, Kind, Model, Prim, Ty};

/// 64-bit FNV-1a over `str`/`u64` items, as `repliq::fingerprint::Hasher`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hasher(u64);

impl Hasher {
    pub fn new() -> Self {
        Hasher(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(mut self, bytes: &[u8]) -> Self {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    pub fn u64(self, x: u64) -> Self {
        self.bytes(&x.to_le_bytes())
    }

    pub fn str(self, s: &str) -> Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }

    pub fn finish(self) -> u64 {
        self.0
    }
}

fn leaf(name: &str) -> u64 {
    Hasher::new().str(name).finish()
}

/// The `NAME` of `repliq::Timestamp`, which the schema type `timestamp` maps to.
pub(crate) const TIMESTAMP_NAME: &str = "repliq.Timestamp";

fn timestamp() -> u64 {
    Hasher::new()
        .str("repliq.message.v1")
        .str("struct")
        .str(TIMESTAMP_NAME)
        .str("named")
        .u64(1)
        .str("nanos")
        .u64(leaf(Prim::I64.name()))
        .finish()
}

/// Fingerprints of all the types of a model (index-aligned with `model.types`).
///
/// The model must be free of recursion (the checker guarantees it).
pub(crate) fn all(model: &Model) -> Vec<u64> {
    let mut memo = vec![None; model.types.len()];
    (0..model.types.len())
        .map(|i| of_type(model, i, &mut memo))
        .collect()
}

fn of_type(model: &Model, index: usize, memo: &mut Vec<Option<u64>>) -> u64 {
    if let Some(fp) = memo[index] {
        return fp;
    }
    let def = &model.types[index];
    let mut h = Hasher::new().str("repliq.message.v1");
    match &def.kind {
        Kind::Message(body) => {
            h = h.str("struct").str(&def.fq);
            h = body_items(model, h, body, memo);
        }
        Kind::Enum(variants) => {
            h = h.str("enum").str(&def.fq).u64(variants.len() as u64);
            for v in variants {
                h = body_items(model, h.str(&v.name), &v.body, memo);
            }
        }
    }
    let fp = h.finish();
    memo[index] = Some(fp);
    fp
}

fn body_items(model: &Model, mut h: Hasher, body: &Body, memo: &mut Vec<Option<u64>>) -> Hasher {
    h = h.str(body.shape.as_str()).u64(body.fields.len() as u64);
    for f in &body.fields {
        h = h.str(&f.name).u64(of_ty(model, &f.ty, memo));
    }
    h
}

pub(crate) fn of_ty(model: &Model, ty: &Ty, memo: &mut Vec<Option<u64>>) -> u64 {
    match ty {
        Ty::Prim(p) => leaf(p.name()),
        Ty::String => leaf("string"),
        Ty::Bytes => Hasher::new().str("vec").u64(leaf("u8")).finish(),
        Ty::Timestamp => timestamp(),
        Ty::List(t) => Hasher::new().str("vec").u64(of_ty(model, t, memo)).finish(),
        Ty::Optional(t) => Hasher::new()
            .str("option")
            .u64(of_ty(model, t, memo))
            .finish(),
        Ty::Map(k, v) => Hasher::new()
            .str("btree_map")
            .u64(of_ty(model, k, memo))
            .u64(of_ty(model, v, memo))
            .finish(),
        Ty::Array(t, n) => Hasher::new()
            .str("array")
            .u64(*n)
            .u64(of_ty(model, t, memo))
            .finish(),
        Ty::Ref(i) => of_type(model, *i, memo),
        Ty::Error => 0,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn fnv1a_reference_vectors() {
        assert_eq!(Hasher::new().finish(), 0xcbf2_9ce4_8422_2325);
        assert_eq!(Hasher::new().bytes(b"a").finish(), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            Hasher::new().bytes(b"foobar").finish(),
            0x8594_4171_f739_67e8
        );
    }

    #[test]
    fn strings_are_length_prefixed() {
        assert_ne!(
            Hasher::new().str("ab").str("c").finish(),
            Hasher::new().str("a").str("bc").finish()
        );
    }
}
