//! Renders an archived record as JSON, guided by a [`Type`] descriptor alone.
//!
//! This follows the layout rules of `docs/FORMAT.md` ("Archived values"). Every read is bounds-
//! and alignment-checked, every tag, `bool`, `char`, UTF-8 string and collection length is
//! validated, so any bytes give either a value or a [`RenderError`] with the offset of the
//! problem, never a panic. The output equals `serde_json::to_value` of the deserialized value
//! (hash sets list their elements in table order).

use serde_json::{Map, Value};

use super::{Kind, Layout, Shape, Type, align_up};

/// Why a record could not be rendered: the offset in the payload and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at payload offset {offset}: {reason}")]
#[non_exhaustive]
pub struct RenderError {
    /// Byte offset in the payload where the problem was found.
    pub offset: usize,
    /// What is wrong.
    pub reason: String,
}

pub(super) type R<T> = std::result::Result<T, RenderError>;

/// B-tree nodes hold this many entries (rkyv's default for `BTreeMap`).
const BTREE_E: usize = 5;
/// Nesting limit for B-tree nodes (a tree of `len ≤ 2^32` entries is far shallower).
const BTREE_MAX_DEPTH: usize = 40;
/// rkyv's SIMD group width, which sizes the control bytes of a hash table.
const GROUP_WIDTH: usize = 16;
/// A relative pointer with this offset points nowhere.
const INVALID_OFFSET: i32 = 1;

/// Validates `payload` (a record's bytes, archived root at the end) as a value of type `ty` and
/// renders it as JSON: what `serde_json::to_value` gives for the deserialized value.
///
/// `u128`/`i128` values outside the 64-bit range (which `serde_json::to_value` refuses) are
/// rendered as decimal strings.
///
/// # Errors
///
/// [`RenderError`] if the bytes do not hold a valid value of the type, or a map key cannot be a
/// JSON object key (floats, `Option`, sequences, structs).
pub fn to_json(ty: &Type, payload: &[u8]) -> R<Value> {
    let layout = ty.layout();
    let Some(root) = payload.len().checked_sub(layout.size) else {
        return Err(RenderError {
            offset: 0,
            reason: format!(
                "the payload has {} bytes; the root alone needs {}",
                payload.len(),
                layout.size
            ),
        });
    };
    Reader {
        b: payload,
        check_only: false,
    }
    .value(ty, root)
}

/// Validates `payload` as a value of type `ty`, exactly as [`to_json`] does (the same checks,
/// the same errors), without building the JSON of strings and of arrays whose elements are
/// valid in every bit pattern (integers, floats): what a writer checks before it appends
/// bytes it did not serialize itself, at a cost that does not grow with such payloads' JSON.
///
/// # Errors
///
/// [`RenderError`] exactly when [`to_json`] gives one.
pub fn validate(ty: &Type, payload: &[u8]) -> R<()> {
    let layout = ty.layout();
    let Some(root) = payload.len().checked_sub(layout.size) else {
        return to_json(ty, payload).map(drop);
    };
    Reader {
        b: payload,
        check_only: true,
    }
    .value(ty, root)
    .map(drop)
}

pub(super) struct Reader<'a> {
    pub(super) b: &'a [u8],
    /// [`validate`]: the values of strings and plain arrays are not built (their checks run).
    pub(super) check_only: bool,
}

/// Whether every bit pattern of a value of `ty` is valid (nothing to check but its place).
fn any_bits_valid(ty: &Type) -> bool {
    matches!(
        ty,
        Type::U8
            | Type::I8
            | Type::U16
            | Type::I16
            | Type::U32
            | Type::I32
            | Type::Usize
            | Type::Isize
            | Type::U64
            | Type::I64
            | Type::U128
            | Type::I128
            | Type::F32
            | Type::F64
            | Type::Unit
    )
}

pub(super) fn err<T>(offset: usize, reason: impl Into<String>) -> R<T> {
    Err(RenderError {
        offset,
        reason: reason.into(),
    })
}

impl Reader<'_> {
    fn bytes(&self, pos: usize, len: usize) -> R<&[u8]> {
        match pos.checked_add(len) {
            Some(end) if end <= self.b.len() => Ok(&self.b[pos..end]),
            _ => err(
                pos,
                format!(
                    "{len} bytes at {pos} run past the end of the {}-byte payload",
                    self.b.len()
                ),
            ),
        }
    }

    pub(super) fn array<const N: usize>(&self, pos: usize) -> R<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(pos, N)?);
        Ok(out)
    }

    pub(super) fn u8(&self, pos: usize) -> R<u8> {
        Ok(self.array::<1>(pos)?[0])
    }
    pub(super) fn u32(&self, pos: usize) -> R<u32> {
        Ok(u32::from_le_bytes(self.array(pos)?))
    }
    pub(super) fn i32(&self, pos: usize) -> R<i32> {
        Ok(i32::from_le_bytes(self.array(pos)?))
    }

    /// A reader that builds every value: map keys are always built (a key must render as a
    /// JSON object key, which is checked on the built value).
    fn rendering(&self) -> Reader<'_> {
        Reader {
            b: self.b,
            check_only: false,
        }
    }

    /// Checks that a value of `layout` at `pos` is aligned and inside the payload.
    pub(super) fn place(&self, pos: usize, layout: Layout) -> R<()> {
        if !pos.is_multiple_of(layout.align) {
            return err(
                pos,
                format!("offset {pos} is not aligned to {} bytes", layout.align),
            );
        }
        self.bytes(pos, layout.size).map(drop)
    }

    /// Follows the 32-bit relative pointer at `pos`: the target offset.
    pub(super) fn rel_ptr(&self, pos: usize) -> R<usize> {
        let offset = self.i32(pos)?;
        let target = pos as i64 + i64::from(offset);
        if target < 0 || target > self.b.len() as i64 {
            return err(
                pos,
                format!("relative pointer {offset:+} leads outside the payload"),
            );
        }
        Ok(target as usize)
    }

    pub(super) fn value(&self, ty: &Type, pos: usize) -> R<Value> {
        self.place(pos, ty.layout())?;
        Ok(match ty {
            Type::Bool => match self.u8(pos)? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return err(pos, format!("invalid bool byte {b:#04x}")),
            },
            Type::Char => {
                let c = self.u32(pos)?;
                match char::from_u32(c) {
                    Some(c) => Value::String(c.to_string()),
                    None => return err(pos, format!("invalid char {c:#x}")),
                }
            }
            Type::U8 => Value::from(self.u8(pos)?),
            Type::I8 => Value::from(self.u8(pos)? as i8),
            Type::U16 => Value::from(u16::from_le_bytes(self.array(pos)?)),
            Type::I16 => Value::from(i16::from_le_bytes(self.array(pos)?)),
            Type::U32 | Type::Usize => Value::from(self.u32(pos)?),
            Type::I32 | Type::Isize => Value::from(self.i32(pos)?),
            Type::U64 => Value::from(u64::from_le_bytes(self.array(pos)?)),
            Type::I64 => Value::from(i64::from_le_bytes(self.array(pos)?)),
            Type::U128 => {
                let x = u128::from_le_bytes(self.array(pos)?);
                match u64::try_from(x) {
                    Ok(u) => Value::from(u),
                    Err(_) => Value::String(x.to_string()),
                }
            }
            Type::I128 => {
                let x = i128::from_le_bytes(self.array(pos)?);
                if let Ok(u) = u64::try_from(x) {
                    Value::from(u)
                } else if let Ok(i) = i64::try_from(x) {
                    Value::from(i)
                } else {
                    Value::String(x.to_string())
                }
            }
            Type::F32 => Value::from(f32::from_le_bytes(self.array(pos)?)),
            Type::F64 => Value::from(f64::from_le_bytes(self.array(pos)?)),
            Type::Unit => Value::Null,
            Type::String if self.check_only => {
                self.string(pos)?;
                Value::Null
            }
            Type::String => Value::String(self.string(pos)?.to_owned()),
            Type::Duration => {
                let secs = u64::from_le_bytes(self.array(pos)?);
                let nanos = self.u32(pos + 8)?;
                if nanos >= 1_000_000_000 {
                    return err(pos + 8, format!("duration nanoseconds {nanos} ≥ 10^9"));
                }
                let mut m = Map::new();
                m.insert("secs".into(), Value::from(secs));
                m.insert("nanos".into(), Value::from(nanos));
                Value::Object(m)
            }
            Type::Vec(elem) => {
                let len = self.u32(pos + 4)? as usize;
                if len == 0 {
                    return Ok(Value::Array(Vec::new()));
                }
                let start = self.rel_ptr(pos)?;
                Value::Array(self.elements(elem, start, len)?)
            }
            Type::Box(inner) => self.value(inner, self.rel_ptr(pos)?)?,
            Type::Option(inner) => match self.u8(pos)? {
                0 => Value::Null,
                1 => self.value(inner, pos + Layout::tagged_offsets([&**inner]).1[0])?,
                t => return err(pos, format!("invalid Option tag {t}")),
            },
            Type::Array { len, of } => {
                Value::Array(self.elements(of, pos, usize::try_from(*len).unwrap_or(usize::MAX))?)
            }
            Type::Tuple(elems) => {
                let (_, offsets) = Layout::record(elems.iter().map(|t| &**t));
                let items = elems
                    .iter()
                    .zip(offsets)
                    .map(|(t, off)| self.value(t, pos + off))
                    .collect::<R<Vec<_>>>()?;
                Value::Array(items)
            }
            Type::HashMap { key, value } => {
                let mut out = Map::new();
                self.hash_table(pos, key, value, |k, v| insert(&mut out, k, v))?;
                Value::Object(out)
            }
            Type::HashSet(key) => {
                let mut out = Vec::new();
                self.hash_table(pos, key, &Type::Unit, |k, _| {
                    out.push(k);
                    Ok(())
                })?;
                Value::Array(out)
            }
            Type::BtreeMap { key, value } => {
                let mut out = Map::new();
                self.btree(pos, key, value, &mut |k, v| insert(&mut out, k, v))?;
                Value::Object(out)
            }
            Type::BtreeSet(key) => {
                let mut out = Vec::new();
                self.btree(pos, key, &Type::Unit, &mut |k, _| {
                    out.push(k);
                    Ok(())
                })?;
                Value::Array(out)
            }
            Type::Message(m) => match &m.kind {
                Kind::Struct(body) => {
                    let (_, offsets) = Layout::record(body.fields.iter().map(|f| &*f.ty));
                    self.body(body, pos, &offsets)?
                }
                Kind::Enum(variants) => {
                    let tag = self.u8(pos)?;
                    let Some(v) = variants.get(usize::from(tag)) else {
                        return err(
                            pos,
                            format!(
                                "invalid tag {tag} for enum {} of {} variants",
                                m.name,
                                variants.len()
                            ),
                        );
                    };
                    let (_, offsets) = Layout::tagged_offsets(v.body.fields.iter().map(|f| &*f.ty));
                    match v.body.shape {
                        Shape::Unit => Value::String(v.name.to_string()),
                        _ => {
                            let mut obj = Map::new();
                            obj.insert(v.name.to_string(), self.body(&v.body, pos, &offsets)?);
                            Value::Object(obj)
                        }
                    }
                }
                _ => return err(pos, format!("message {} has a kind unknown here", m.name)),
            },
            _ => return err(pos, "a type this version of repliq cannot render"),
        })
    }

    /// The fields of a struct or variant, as serde represents them: an object (named), the
    /// value itself (one tuple field), an array (other tuples), `null` (unit).
    fn body(&self, body: &super::Body, pos: usize, offsets: &[usize]) -> R<Value> {
        let mut values = body
            .fields
            .iter()
            .zip(offsets)
            .map(|(f, off)| self.value(&f.ty, pos + off));
        Ok(match body.shape {
            Shape::Unit => Value::Null,
            Shape::Tuple if body.fields.len() == 1 => values.next().unwrap_or(Ok(Value::Null))?,
            Shape::Tuple => Value::Array(values.collect::<R<_>>()?),
            Shape::Named => {
                let mut obj = Map::new();
                for (f, v) in body.fields.iter().zip(values) {
                    obj.insert(f.name.to_string(), v?);
                }
                Value::Object(obj)
            }
        })
    }

    /// Checks that `len` elements of `elem` starting at `start` are aligned and inside the
    /// payload: the layout of one element.
    pub(super) fn place_elements(&self, elem: &Type, start: usize, len: usize) -> R<Layout> {
        let layout = elem.layout();
        match layout.size.checked_mul(len) {
            Some(total) => self.place(
                start,
                Layout {
                    size: total,
                    align: layout.align,
                },
            )?,
            None => return err(start, format!("{len} elements overflow")),
        }
        Ok(layout)
    }

    fn elements(&self, elem: &Type, start: usize, len: usize) -> R<Vec<Value>> {
        let layout = self.place_elements(elem, start, len)?;
        if self.check_only && any_bits_valid(elem) {
            return Ok(Vec::new());
        }
        (0..len)
            .map(|i| self.value(elem, start + i * layout.size))
            .collect()
    }

    pub(super) fn string(&self, pos: usize) -> R<&str> {
        let repr: [u8; 8] = self.array(pos)?;
        let bytes = if repr[0] & 0xc0 != 0x80 {
            let len = repr.iter().position(|&b| b == 0xff).unwrap_or(8);
            self.bytes(pos, len)?
        } else {
            let raw = self.u32(pos)?;
            let len = ((raw & 0x3f) | ((raw & !0xff) >> 2)) as usize;
            if len <= 8 {
                return err(pos, format!("out-of-line string of only {len} bytes"));
            }
            // The offset (second word) is relative to the start of the representation.
            let offset = self.i32(pos + 4)?;
            let target = pos as i64 + i64::from(offset);
            let Ok(target) = usize::try_from(target) else {
                return err(
                    pos,
                    format!("string offset {offset:+} leads outside the payload"),
                );
            };
            self.bytes(target, len)?
        };
        std::str::from_utf8(bytes).or_else(|e| err(pos, format!("string is not UTF-8: {e}")))
    }

    /// Calls `f` with each entry of the swiss table at `pos`, in table order.
    fn hash_table(
        &self,
        pos: usize,
        key: &Type,
        value: &Type,
        mut f: impl FnMut(Value, Value) -> R<()>,
    ) -> R<()> {
        let len = self.u32(pos + 4)? as usize;
        let cap = self.u32(pos + 8)? as usize;
        if len == 0 {
            return Ok(());
        }
        if len >= cap {
            return err(pos, format!("hash table length {len} ≥ capacity {cap}"));
        }
        let ctrl = self.rel_ptr(pos)?;
        let (entry, offsets) = Layout::record([key, value].into_iter());
        let control_count = cap.next_multiple_of(GROUP_WIDTH) + GROUP_WIDTH - 1;
        self.bytes(ctrl, control_count)?;
        let Some(first) = entry
            .size
            .checked_mul(cap)
            .and_then(|n| ctrl.checked_sub(n))
        else {
            return err(
                pos,
                format!("{cap} hash table buckets lie before the payload"),
            );
        };
        if !first.is_multiple_of(entry.align) || !ctrl.is_multiple_of(entry.align) {
            return err(ctrl, "misaligned hash table buckets");
        }
        let mut seen = 0;
        for i in 0..cap {
            if self.b[ctrl + i] & 0x80 != 0 {
                continue;
            }
            let at = ctrl - (i + 1) * entry.size;
            seen += 1;
            f(
                self.rendering().value(key, at + offsets[0])?,
                self.value(value, at + offsets[1])?,
            )?;
        }
        if seen != len {
            return err(
                pos,
                format!("hash table holds {seen} entries, its length says {len}"),
            );
        }
        Ok(())
    }

    /// Calls `f` with each entry of the B-tree map at `pos`, in key order.
    fn btree(
        &self,
        pos: usize,
        key: &Type,
        value: &Type,
        f: &mut dyn FnMut(Value, Value) -> R<()>,
    ) -> R<()> {
        let len = self.u32(pos + 4)? as usize;
        if len == 0 {
            return Ok(());
        }
        let node = BtreeNode::new(key.layout(), value.layout());
        let root = self.rel_ptr(pos)?;
        let mut seen = 0;
        self.btree_node(&node, root, key, value, 0, len, &mut seen, f)?;
        if seen != len {
            return err(
                pos,
                format!("B-tree holds {seen} entries, its length says {len}"),
            );
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn btree_node(
        &self,
        node: &BtreeNode,
        at: usize,
        key: &Type,
        value: &Type,
        depth: usize,
        len: usize,
        seen: &mut usize,
        f: &mut dyn FnMut(Value, Value) -> R<()>,
    ) -> R<()> {
        if depth > BTREE_MAX_DEPTH {
            return err(at, "B-tree nodes nest too deeply (a pointer cycle?)");
        }
        let entry = |i: usize, seen: &mut usize, f: &mut dyn FnMut(Value, Value) -> R<()>| {
            *seen += 1;
            if *seen > len {
                return err(
                    at,
                    format!("B-tree holds more entries than its length {len}"),
                );
            }
            f(
                self.rendering()
                    .value(key, at + node.keys + i * node.key_size)?,
                self.value(value, at + node.values + i * node.value_size)?,
            )
        };
        match self.u8(at)? {
            0 => {
                self.place(at, node.leaf)?;
                let n = self.u32(at + node.tail)? as usize;
                if n > BTREE_E {
                    return err(at, format!("B-tree leaf with {n} entries"));
                }
                for i in 0..n {
                    entry(i, seen, f)?;
                }
            }
            1 => {
                self.place(at, node.inner)?;
                for i in 0..BTREE_E {
                    let ptr = at + node.tail + 4 * i;
                    if self.i32(ptr)? != INVALID_OFFSET {
                        let child = self.rel_ptr(ptr)?;
                        self.btree_node(node, child, key, value, depth + 1, len, seen, f)?;
                    }
                    entry(i, seen, f)?;
                }
                let ptr = at + node.tail + 4 * BTREE_E;
                if self.i32(ptr)? != INVALID_OFFSET {
                    let child = self.rel_ptr(ptr)?;
                    self.btree_node(node, child, key, value, depth + 1, len, seen, f)?;
                }
            }
            k => return err(at, format!("invalid B-tree node kind {k}")),
        }
        Ok(())
    }
}

/// The layout of rkyv's B-tree nodes for one key and value type.
struct BtreeNode {
    keys: usize,
    key_size: usize,
    values: usize,
    value_size: usize,
    /// Offset of the leaf's `len`, or of the inner node's child pointers.
    tail: usize,
    leaf: Layout,
    inner: Layout,
}

impl BtreeNode {
    fn new(k: Layout, v: Layout) -> Self {
        let keys = align_up(1, k.align);
        let values = align_up(keys + BTREE_E * k.size, v.align);
        let node_align = k.align.max(v.align);
        let node_size = align_up(values + BTREE_E * v.size, node_align);
        let tail = align_up(node_size, 4);
        let align = node_align.max(4);
        BtreeNode {
            keys,
            key_size: k.size,
            values,
            value_size: v.size,
            tail,
            leaf: Layout {
                size: align_up(tail + 4, align),
                align,
            },
            inner: Layout {
                size: align_up(tail + 4 * (BTREE_E + 1), align),
                align,
            },
        }
    }
}

/// Inserts a map entry with the key turned into a JSON object key as serde_json does.
fn insert(out: &mut Map<String, Value>, key: Value, value: Value) -> R<()> {
    let key = match key {
        Value::String(s) => s,
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if !n.is_f64() => n.to_string(),
        other => {
            return err(
                0,
                format!("a map key must be a string, integer, bool or char, not {other}"),
            );
        }
    };
    out.insert(key, value);
    Ok(())
}
