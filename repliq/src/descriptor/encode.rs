//! Encodes a JSON value as an archived record, guided by a [`Type`] descriptor alone: the inverse
//! of [`to_json`](super::to_json), for tools and bridges that carry no Rust type (the connectors
//! of `repliq-connect` turn JSON from other systems into queue records with it).
//!
//! The bytes follow the layout rules of `docs/FORMAT.md` ("Archived values"), with every
//! out-of-line part (long strings, vector elements, boxed values) written before the value that
//! points at it, in field order, and the root at the end, as rkyv writes them; they pass rkyv's
//! validation for the Rust type the descriptor describes.
//!
//! The JSON accepted is what `serde_json` gives for the Rust value (see "As JSON" in
//! `docs/FORMAT.md`), with what `serde` itself accepts besides: a missing `Option` field is
//! `None`, unknown object keys are ignored, a duration may be `[secs, nanos]`, a `u128`/`i128` may
//! be a decimal string, and a float may be `null` (NaN, as [`to_json`](super::to_json) renders
//! it). Hash maps, hash sets, B-tree maps and B-tree sets are not supported: their archived
//! forms (a swiss table keyed by rkyv's hash, a B-tree) are left to the typed path.

use serde_json::Value;

use super::{Kind, Layout, Shape, Type, align_up};

/// Why a JSON value could not be encoded: where in the value (a JSON pointer) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at {}: {reason}", if path.is_empty() { "the root" } else { path.as_str() })]
#[non_exhaustive]
pub struct EncodeError {
    /// A JSON pointer (`/inners/3/name`) to the value that does not fit; empty for the root.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

type R<T> = std::result::Result<T, EncodeError>;

/// Encodes `value` as an archived value of type `ty` (the root at the end of the bytes). The
/// bytes must be stored at a 16-byte aligned address to be read in place (a journal slot is).
///
/// # Errors
///
/// [`EncodeError`] naming the place in `value` that does not fit the type (a missing field, a
/// number out of range, a string where a number belongs, an unknown enum variant), or a map or
/// set type, which this encoder does not support.
pub fn from_json(ty: &Type, value: &Value) -> R<Vec<u8>> {
    let mut w = Writer { buf: Vec::new() };
    let mut path = String::new();
    let inline = w.encode(ty, value, &mut path)?;
    w.place(&inline, ty.layout().align);
    Ok(w.buf)
}

/// Checks that [`from_json`] can encode values of `ty` (it holds no map or set): `Err` names the
/// first type it cannot. For checking a configuration before any message arrives.
///
/// # Errors
///
/// [`EncodeError`] with the path of the unsupported type in the descriptor.
pub fn check_json_encodable(ty: &Type) -> R<()> {
    fn walk(ty: &Type, path: &mut String, depth: usize) -> R<()> {
        if depth > MAX_DEPTH {
            return Err(EncodeError {
                path: path.clone(),
                reason: "the type nests too deeply".into(),
            });
        }
        match ty {
            Type::HashMap { .. } | Type::HashSet(_) | Type::BtreeMap { .. } | Type::BtreeSet(_) => {
                Err(EncodeError {
                    path: path.clone(),
                    reason: "maps and sets cannot be encoded from JSON (use archived bytes)".into(),
                })
            }
            Type::Vec(t) | Type::Option(t) | Type::Box(t) | Type::Array { of: t, .. } => {
                walk(t, path, depth + 1)
            }
            Type::Tuple(elems) => elems.iter().enumerate().try_for_each(|(i, t)| {
                with_segment(path, &i.to_string(), |p| walk(t, p, depth + 1))
            }),
            Type::Message(m) => {
                let bodies: Vec<(&str, &super::Body)> = match &m.kind {
                    Kind::Struct(b) => vec![("", b)],
                    Kind::Enum(vs) => vs.iter().map(|v| (&*v.name, &v.body)).collect(),
                    _ => Vec::new(),
                };
                for (variant, body) in bodies {
                    with_segment(path, variant, |p| {
                        body.fields.iter().try_for_each(|f| {
                            with_segment(p, &f.name, |p| walk(&f.ty, p, depth + 1))
                        })
                    })?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    walk(ty, &mut String::new(), 0)
}

/// Nesting limit (JSON from outside could otherwise exhaust the stack through `Box` cycles).
const MAX_DEPTH: usize = 128;

fn with_segment<T>(path: &mut String, seg: &str, f: impl FnOnce(&mut String) -> R<T>) -> R<T> {
    let len = path.len();
    if !seg.is_empty() {
        path.push('/');
        path.push_str(&seg.replace('~', "~0").replace('/', "~1"));
    }
    let out = f(path);
    path.truncate(len);
    out
}

fn fail<T>(path: &str, reason: impl Into<String>) -> R<T> {
    Err(EncodeError {
        path: path.to_owned(),
        reason: reason.into(),
    })
}

/// A value's inline bytes, with the relative pointers still to be filled in once its position
/// is known.
struct Inline {
    bytes: Vec<u8>,
    /// `(at, base, target)`: the `i32` at `at` holds `target − (position + base)`.
    fixups: Vec<(usize, usize, usize)>,
}

impl Inline {
    fn zeroed(size: usize) -> Inline {
        Inline {
            bytes: vec![0; size],
            fixups: Vec::new(),
        }
    }

    /// Copies `child` into these bytes at `offset`.
    fn put(&mut self, offset: usize, child: Inline) {
        self.bytes[offset..offset + child.bytes.len()].copy_from_slice(&child.bytes);
        self.fixups.extend(
            child
                .fixups
                .into_iter()
                .map(|(at, base, target)| (at + offset, base + offset, target)),
        );
    }
}

struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Appends `inline` at the next multiple of `align` and resolves its pointers.
    fn place(&mut self, inline: &Inline, align: usize) -> usize {
        let pos = align_up(self.buf.len(), align);
        self.buf.resize(pos, 0);
        self.buf.extend_from_slice(&inline.bytes);
        for &(at, base, target) in &inline.fixups {
            let rel = target as i64 - (pos + base) as i64;
            let rel = rel as i32;
            self.buf[pos + at..pos + at + 4].copy_from_slice(&rel.to_le_bytes());
        }
        pos
    }

    /// Writes what `value` points to and returns its inline bytes.
    fn encode(&mut self, ty: &Type, v: &Value, path: &mut String) -> R<Inline> {
        if path.len() > 64 * MAX_DEPTH {
            return fail(path, "the value nests too deeply");
        }
        let layout = ty.layout();
        let le = |b: &[u8]| Inline {
            bytes: b.to_vec(),
            fixups: Vec::new(),
        };
        Ok(match ty {
            Type::Bool => match v {
                Value::Bool(b) => le(&[u8::from(*b)]),
                _ => return fail(path, format!("expected a bool, found {}", kind(v))),
            },
            Type::Char => match v.as_str().map(|s| {
                let mut it = s.chars();
                (it.next(), it.next())
            }) {
                Some((Some(c), None)) => le(&u32::from(c).to_le_bytes()),
                _ => return fail(path, format!("expected a one-character string, found {v}")),
            },
            Type::U8 => le(&[int::<u8>(v, path)?]),
            Type::U16 => le(&int::<u16>(v, path)?.to_le_bytes()),
            Type::U32 | Type::Usize => le(&int::<u32>(v, path)?.to_le_bytes()),
            Type::U64 => le(&int::<u64>(v, path)?.to_le_bytes()),
            Type::I8 => le(&int::<i8>(v, path)?.to_le_bytes()),
            Type::I16 => le(&int::<i16>(v, path)?.to_le_bytes()),
            Type::I32 | Type::Isize => le(&int::<i32>(v, path)?.to_le_bytes()),
            Type::I64 => le(&int::<i64>(v, path)?.to_le_bytes()),
            Type::U128 => le(&wide::<u128>(v, path)?.to_le_bytes()),
            Type::I128 => le(&wide::<i128>(v, path)?.to_le_bytes()),
            Type::F32 => le(&(float(v, path)? as f32).to_le_bytes()),
            Type::F64 => le(&float(v, path)?.to_le_bytes()),
            Type::Unit => match v {
                Value::Null => Inline::zeroed(0),
                _ => return fail(path, format!("expected null, found {}", kind(v))),
            },
            Type::String => match v {
                Value::String(s) => self.string(s),
                _ => return fail(path, format!("expected a string, found {}", kind(v))),
            },
            Type::Duration => {
                let (secs, nanos) = match v {
                    Value::Object(m) => (m.get("secs"), m.get("nanos")),
                    Value::Array(a) if a.len() == 2 => (a.first(), a.get(1)),
                    _ => return fail(path, format!("expected {{\"secs\", \"nanos\"}}, found {v}")),
                };
                let (Some(secs), Some(nanos)) = (secs, nanos) else {
                    return fail(path, "a duration needs \"secs\" and \"nanos\"");
                };
                let secs = with_segment(path, "secs", |p| int::<u64>(secs, p))?;
                let nanos = with_segment(path, "nanos", |p| int::<u32>(nanos, p))?;
                if nanos >= 1_000_000_000 {
                    return fail(path, format!("duration nanoseconds {nanos} ≥ 10^9"));
                }
                let mut out = Inline::zeroed(16);
                out.bytes[..8].copy_from_slice(&secs.to_le_bytes());
                out.bytes[8..12].copy_from_slice(&nanos.to_le_bytes());
                out
            }
            Type::Vec(elem) => {
                let Value::Array(items) = v else {
                    return fail(path, format!("expected an array, found {}", kind(v)));
                };
                let Ok(len) = u32::try_from(items.len()) else {
                    return fail(path, "more than 2^32 elements");
                };
                let start = self.elements(elem, items, path)?;
                let mut out = Inline::zeroed(8);
                out.fixups.push((0, 0, start));
                out.bytes[4..8].copy_from_slice(&len.to_le_bytes());
                out
            }
            Type::Box(inner) => {
                let child = self.encode(inner, v, path)?;
                let target = self.place(&child, inner.layout().align);
                let mut out = Inline::zeroed(4);
                out.fixups.push((0, 0, target));
                out
            }
            Type::Option(inner) => {
                let mut out = Inline::zeroed(layout.size);
                if !v.is_null() {
                    let child = self.encode(inner, v, path)?;
                    out.bytes[0] = 1;
                    out.put(Layout::tagged_offsets([&**inner]).1[0], child);
                }
                out
            }
            Type::Array { len, of } => {
                let Value::Array(items) = v else {
                    return fail(path, format!("expected an array, found {}", kind(v)));
                };
                if items.len() as u64 != *len {
                    return fail(
                        path,
                        format!("expected {len} elements, found {}", items.len()),
                    );
                }
                let stride = of.layout().size;
                let mut out = Inline::zeroed(layout.size);
                for (i, item) in items.iter().enumerate() {
                    let child = with_segment(path, &i.to_string(), |p| self.encode(of, item, p))?;
                    out.put(i * stride, child);
                }
                out
            }
            Type::Tuple(elems) => {
                let items = match v {
                    Value::Array(items) if items.len() == elems.len() => items,
                    _ => {
                        return fail(
                            path,
                            format!("expected an array of {} elements, found {v}", elems.len()),
                        );
                    }
                };
                let (_, offsets) = Layout::record(elems.iter().map(|t| &**t));
                let mut out = Inline::zeroed(layout.size);
                for (i, ((t, item), off)) in elems.iter().zip(items).zip(offsets).enumerate() {
                    let child = with_segment(path, &i.to_string(), |p| self.encode(t, item, p))?;
                    out.put(off, child);
                }
                out
            }
            Type::HashMap { .. } | Type::HashSet(_) | Type::BtreeMap { .. } | Type::BtreeSet(_) => {
                return fail(
                    path,
                    "maps and sets cannot be encoded from JSON (use archived bytes)",
                );
            }
            Type::Message(m) => match &m.kind {
                Kind::Struct(body) => {
                    let (_, offsets) = Layout::record(body.fields.iter().map(|f| &*f.ty));
                    let mut out = Inline::zeroed(layout.size);
                    self.body(body, v, &offsets, &mut out, path, &m.name)?;
                    out
                }
                Kind::Enum(variants) => {
                    let (name, body_value) = match v {
                        Value::String(s) => (s.as_str(), &Value::Null),
                        Value::Object(o) if o.len() == 1 => match o.iter().next() {
                            Some((k, b)) => (k.as_str(), b),
                            None => unreachable!("one entry"),
                        },
                        _ => {
                            return fail(
                                path,
                                format!(
                                    "expected a variant of enum {} (\"Name\" or {{\"Name\": ...}}), found {v}",
                                    m.name
                                ),
                            );
                        }
                    };
                    let Some((tag, variant)) = variants
                        .iter()
                        .enumerate()
                        .find(|(_, var)| var.name == name)
                    else {
                        let known: Vec<&str> = variants.iter().map(|v| &*v.name).collect();
                        return fail(
                            path,
                            format!(
                                "enum {} has no variant {name:?} (it has {})",
                                m.name,
                                known.join(", ")
                            ),
                        );
                    };
                    if variant.body.shape != Shape::Unit && v.is_string() {
                        return fail(path, format!("variant {name} of {} has fields", m.name));
                    }
                    let (_, offsets) =
                        Layout::tagged_offsets(variant.body.fields.iter().map(|f| &*f.ty));
                    let mut out = Inline::zeroed(layout.size);
                    out.bytes[0] = tag as u8;
                    with_segment(path, name, |p| {
                        self.body(&variant.body, body_value, &offsets, &mut out, p, name)
                    })?;
                    out
                }
                _ => return fail(path, format!("message {} has a kind unknown here", m.name)),
            },
            _ => return fail(path, "a type this version of repliq cannot encode"),
        })
    }

    /// Encodes a struct's or variant's fields into `out` at `offsets`.
    fn body(
        &mut self,
        body: &super::Body,
        v: &Value,
        offsets: &[usize],
        out: &mut Inline,
        path: &mut String,
        what: &str,
    ) -> R<()> {
        let fields = body.fields.iter().zip(offsets);
        match body.shape {
            Shape::Unit => {
                if !v.is_null() {
                    return fail(
                        path,
                        format!("{what} has no fields; expected null, found {v}"),
                    );
                }
            }
            Shape::Tuple if body.fields.len() == 1 => {
                for (f, &off) in fields {
                    let child = self.encode(&f.ty, v, path)?;
                    out.put(off, child);
                }
            }
            Shape::Tuple => {
                let items = match v {
                    Value::Array(items) if items.len() == body.fields.len() => items,
                    _ => {
                        return fail(
                            path,
                            format!(
                                "{what} has {} fields; expected an array of them, found {v}",
                                body.fields.len()
                            ),
                        );
                    }
                };
                for (i, ((f, &off), item)) in fields.zip(items).enumerate() {
                    let child =
                        with_segment(path, &i.to_string(), |p| self.encode(&f.ty, item, p))?;
                    out.put(off, child);
                }
            }
            Shape::Named => {
                let Value::Object(obj) = v else {
                    return fail(
                        path,
                        format!("{what}: expected an object, found {}", kind(v)),
                    );
                };
                for (f, &off) in fields {
                    let child = with_segment(path, &f.name, |p| match obj.get(&*f.name) {
                        Some(x) => self.encode(&f.ty, x, p),
                        None if matches!(&*f.ty, Type::Option(_)) => {
                            self.encode(&f.ty, &Value::Null, p)
                        }
                        None => fail(p, format!("missing field {:?} of {what}", f.name)),
                    })?;
                    out.put(off, child);
                }
            }
        }
        Ok(())
    }

    /// Writes the elements of a vector contiguously (after what they point to) and returns
    /// where the first one starts.
    fn elements(&mut self, elem: &Type, items: &[Value], path: &mut String) -> R<usize> {
        let mut inlines = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            inlines.push(with_segment(path, &i.to_string(), |p| {
                self.encode(elem, item, p)
            })?);
        }
        let l = elem.layout();
        let start = align_up(self.buf.len(), l.align);
        self.buf.resize(start, 0);
        for inline in &inlines {
            self.place(inline, l.align);
        }
        Ok(start)
    }

    fn string(&mut self, s: &str) -> Inline {
        let b = s.as_bytes();
        let mut out = Inline::zeroed(8);
        if b.len() <= 8 {
            out.bytes = [0xff; 8].to_vec();
            out.bytes[..b.len()].copy_from_slice(b);
            return out;
        }
        let target = self.buf.len();
        self.buf.extend_from_slice(b);
        let len = b.len() as u32;
        let w = 0x80 | (len & 0x3f) | ((len >> 6) << 8);
        out.bytes[..4].copy_from_slice(&w.to_le_bytes());
        out.fixups.push((4, 0, target));
        out
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn int<T: TryFrom<i64> + TryFrom<u64>>(v: &Value, path: &str) -> R<T> {
    let out = match v {
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => T::try_from(u).ok(),
            (None, Some(i)) => T::try_from(i).ok(),
            _ => None,
        },
        _ => return fail(path, format!("expected an integer, found {}", kind(v))),
    };
    out.map_or_else(
        || {
            fail(
                path,
                format!(
                    "{v} is not an integer in the range of {}",
                    std::any::type_name::<T>()
                ),
            )
        },
        Ok,
    )
}

fn wide<T: std::str::FromStr + TryFrom<i64> + TryFrom<u64>>(v: &Value, path: &str) -> R<T> {
    match v {
        Value::String(s) => s.parse().or_else(|_| {
            fail(
                path,
                format!(
                    "{s:?} is not an integer in the range of {}",
                    std::any::type_name::<T>()
                ),
            )
        }),
        _ => int(v, path),
    }
}

fn float(v: &Value, path: &str) -> R<f64> {
    match v {
        Value::Number(n) => n.as_f64().map_or_else(|| fail(path, "not a float"), Ok),
        Value::Null => Ok(f64::NAN),
        _ => fail(path, format!("expected a number, found {}", kind(v))),
    }
}
