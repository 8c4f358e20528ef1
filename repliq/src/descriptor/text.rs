//! Renders an archived record straight to JSON text, guided by a [`Type`] descriptor alone:
//! what a connector sends, without building a [`serde_json::Value`] first.
//!
//! It walks the record with the checked reads of [`to_json`](super::to_json) (the same bounds,
//! alignment, tag, UTF-8 and length checks, so the same records are refused with the same
//! errors) and writes each leaf as it goes. Maps and sets, whose keys serde turns into object
//! keys or orders, are rendered through a [`serde_json::Value`] as before: the text always
//! parses to the value `to_json` gives. Named fields come in declaration order (what serde
//! writes for the Rust type), where a [`serde_json::Value`] object sorts them.

use std::io::Write as _;

use serde_json::Value;

use super::render::{R, Reader, err};
use super::{Kind, Layout, Shape, Type};

/// Validates `payload` as a value of type `ty` and appends its JSON text to `out`: text that
/// parses to what [`to_json`](super::to_json) returns for the same bytes.
///
/// # Errors
///
/// [`RenderError`](super::RenderError) exactly when [`to_json`](super::to_json) gives one;
/// `out` is then left as it was.
pub fn to_json_text(ty: &Type, payload: &[u8], out: &mut Vec<u8>) -> R<()> {
    let Some(root) = payload.len().checked_sub(ty.layout().size) else {
        return super::to_json(ty, payload).map(drop);
    };
    let start = out.len();
    let reader = Reader {
        b: payload,
        check_only: false,
    };
    let written = Text { r: &reader, out }.value(ty, root);
    if written.is_err() {
        out.truncate(start);
    }
    written
}

struct Text<'r, 'a, 'o> {
    r: &'r Reader<'a>,
    out: &'o mut Vec<u8>,
}

impl Text<'_, '_, '_> {
    fn raw(&mut self, s: &[u8]) {
        self.out.extend_from_slice(s);
    }

    /// A number or string the way `serde_json` writes it.
    fn display(&mut self, x: impl std::fmt::Display) {
        // Writing into a Vec cannot fail.
        let _ = write!(self.out, "{x}");
    }

    /// Any value through serde_json's own writer (string escapes, float formatting).
    fn json(&mut self, v: &(impl serde::Serialize + ?Sized)) -> R<()> {
        serde_json::to_writer(&mut *self.out, v).or_else(|e| err(0, e.to_string()))
    }

    fn value(&mut self, ty: &Type, pos: usize) -> R<()> {
        let r = self.r;
        r.place(pos, ty.layout())?;
        match ty {
            Type::Bool => match r.u8(pos)? {
                0 => self.raw(b"false"),
                1 => self.raw(b"true"),
                b => return err(pos, format!("invalid bool byte {b:#04x}")),
            },
            Type::Char => {
                let c = r.u32(pos)?;
                match char::from_u32(c) {
                    Some(c) => self.json(c.encode_utf8(&mut [0; 4]))?,
                    None => return err(pos, format!("invalid char {c:#x}")),
                }
            }
            Type::U8 => self.display(r.u8(pos)?),
            Type::I8 => self.display(r.u8(pos)? as i8),
            Type::U16 => self.display(u16::from_le_bytes(r.array(pos)?)),
            Type::I16 => self.display(i16::from_le_bytes(r.array(pos)?)),
            Type::U32 | Type::Usize => self.display(r.u32(pos)?),
            Type::I32 | Type::Isize => self.display(r.i32(pos)?),
            Type::U64 => self.display(u64::from_le_bytes(r.array(pos)?)),
            Type::I64 => self.display(i64::from_le_bytes(r.array(pos)?)),
            Type::U128 => {
                let x = u128::from_le_bytes(r.array(pos)?);
                if u64::try_from(x).is_ok() {
                    self.display(x);
                } else {
                    self.json(&x.to_string())?;
                }
            }
            Type::I128 => {
                let x = i128::from_le_bytes(r.array(pos)?);
                if i64::try_from(x).is_ok() || u64::try_from(x).is_ok() {
                    self.display(x);
                } else {
                    self.json(&x.to_string())?;
                }
            }
            // As `Value::from`: a non-finite float is `null`, an `f32` is widened to `f64`.
            Type::F32 => self.json(&Value::from(f32::from_le_bytes(r.array(pos)?)))?,
            Type::F64 => self.json(&Value::from(f64::from_le_bytes(r.array(pos)?)))?,
            Type::Unit => self.raw(b"null"),
            Type::String => {
                let s = r.string(pos)?;
                self.json(s)?;
            }
            Type::Duration => {
                let secs = u64::from_le_bytes(r.array(pos)?);
                let nanos = r.u32(pos + 8)?;
                if nanos >= 1_000_000_000 {
                    return err(pos + 8, format!("duration nanoseconds {nanos} ≥ 10^9"));
                }
                let _ = write!(self.out, "{{\"secs\":{secs},\"nanos\":{nanos}}}");
            }
            Type::Vec(elem) => {
                let len = r.u32(pos + 4)? as usize;
                if len == 0 {
                    self.raw(b"[]");
                } else {
                    let start = r.rel_ptr(pos)?;
                    self.elements(elem, start, len)?;
                }
            }
            Type::Box(inner) => {
                let at = r.rel_ptr(pos)?;
                self.value(inner, at)?;
            }
            Type::Option(inner) => match r.u8(pos)? {
                0 => self.raw(b"null"),
                1 => self.value(inner, pos + Layout::tagged_offsets([&**inner]).1[0])?,
                t => return err(pos, format!("invalid Option tag {t}")),
            },
            Type::Array { len, of } => {
                self.elements(of, pos, usize::try_from(*len).unwrap_or(usize::MAX))?;
            }
            Type::Tuple(elems) => {
                let (_, offsets) = Layout::record(elems.iter().map(|t| &**t));
                self.raw(b"[");
                for (i, (t, off)) in elems.iter().zip(offsets).enumerate() {
                    if i > 0 {
                        self.raw(b",");
                    }
                    self.value(t, pos + off)?;
                }
                self.raw(b"]");
            }
            Type::Message(m) => match &m.kind {
                Kind::Struct(body) => {
                    let (_, offsets) = Layout::record(body.fields.iter().map(|f| &*f.ty));
                    self.body(body, pos, &offsets)?;
                }
                Kind::Enum(variants) => {
                    let tag = r.u8(pos)?;
                    let Some(v) = variants.get(usize::from(tag)) else {
                        // The same error as the value renderer's.
                        return r.value(ty, pos).map(drop);
                    };
                    let (_, offsets) = Layout::tagged_offsets(v.body.fields.iter().map(|f| &*f.ty));
                    if matches!(v.body.shape, Shape::Unit) {
                        self.json(&*v.name)?;
                    } else {
                        self.raw(b"{");
                        self.json(&*v.name)?;
                        self.raw(b":");
                        self.body(&v.body, pos, &offsets)?;
                        self.raw(b"}");
                    }
                }
                // Kinds this walk does not know: the value renderer renders or refuses them.
                _ => {
                    let v = r.value(ty, pos)?;
                    self.json(&v)?;
                }
            },
            // Maps and sets (their keys become object keys, as serde makes them), and types
            // this walk does not know: through the value renderer, with its checks and errors.
            _ => {
                let v = r.value(ty, pos)?;
                self.json(&v)?;
            }
        }
        Ok(())
    }

    /// The fields of a struct or variant, as serde writes them: an object (named), the value
    /// itself (one tuple field), an array (other tuples), `null` (unit).
    fn body(&mut self, body: &super::Body, pos: usize, offsets: &[usize]) -> R<()> {
        match body.shape {
            Shape::Unit => self.raw(b"null"),
            Shape::Tuple if body.fields.len() == 1 => {
                match (body.fields.first(), offsets.first()) {
                    (Some(f), Some(off)) => self.value(&f.ty, pos + off)?,
                    _ => self.raw(b"null"),
                }
            }
            Shape::Tuple => {
                self.raw(b"[");
                for (i, (f, off)) in body.fields.iter().zip(offsets).enumerate() {
                    if i > 0 {
                        self.raw(b",");
                    }
                    self.value(&f.ty, pos + off)?;
                }
                self.raw(b"]");
            }
            Shape::Named => {
                self.raw(b"{");
                for (i, (f, off)) in body.fields.iter().zip(offsets).enumerate() {
                    if i > 0 {
                        self.raw(b",");
                    }
                    self.json(&*f.name)?;
                    self.raw(b":");
                    self.value(&f.ty, pos + off)?;
                }
                self.raw(b"}");
            }
        }
        Ok(())
    }

    fn elements(&mut self, elem: &Type, start: usize, len: usize) -> R<()> {
        let layout = self.r.place_elements(elem, start, len)?;
        self.raw(b"[");
        for i in 0..len {
            if i > 0 {
                self.raw(b",");
            }
            self.value(elem, start + i * layout.size)?;
        }
        self.raw(b"]");
        Ok(())
    }
}
