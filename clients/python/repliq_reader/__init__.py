"""A reader for repliq queue directories, written from docs/FORMAT.md alone (standard library only).

    import repliq_reader
    for message in repliq_reader.open_queue("/var/lib/repliq/orders"):
        print(message)                      # a dict (or list/str/int/... for non-struct types)

`Queue.records(follow=...)` yields `Record(seq, time, message)`; `follow=True` waits for new
records like `repliq tail`. Files are opened read-only; a record that cannot be decoded
is reported (file and offset) through the `on_error` callback and skipped.

Every record's crc32c is checked. With the `crc32c` package from PyPI installed (`pip install
'clients/python[fast]'`; or `google-crc32c`) that is done in C; otherwise in pure Python, which
costs several microseconds per 100 bytes. `CRC32C_BACKEND` names the one in use.
"""

import collections
import json
import mmap
import os
import struct
import time

__all__ = ["open_queue", "Queue", "Record", "FormatError", "decode", "compile_decoder", "layout",
           "crc32c", "CRC32C_BACKEND"]

Record = collections.namedtuple("Record", "seq time message")


class FormatError(Exception):
    """The bytes do not follow docs/FORMAT.md."""


# ---------------------------------------------------------------------------------------------
# crc32c (Castagnoli, reflected polynomial 0x82F63B78)

def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def _crc32c_pure(data, crc=0):
    crc ^= 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc32c_backend():
    """The fastest crc32c available: the `crc32c` package (hardware instructions where the CPU
    has them), `google-crc32c`'s C extension, or the pure-Python table."""
    try:
        import crc32c as _c  # PyPI `crc32c`

        if _c.crc32c(b"123456789") == 0xE3069283 and _c.crc32c(b"56789", _c.crc32c(b"1234")) \
                == 0xE3069283:
            return _c.crc32c, "crc32c"  # crc32c(data, crc) positionally, like ours
    except (ImportError, AttributeError, TypeError):
        pass
    try:
        import google_crc32c as _g  # PyPI `google-crc32c`

        if _g.implementation == "c" and _g.value(b"123456789") == 0xE3069283:
            return (lambda data, crc=0: _g.extend(crc, data)), "google-crc32c"
    except (ImportError, AttributeError, TypeError):
        pass
    return _crc32c_pure, "pure-python"


if os.environ.get("REPLIQ_READER_PURE_CRC"):
    crc32c, CRC32C_BACKEND = _crc32c_pure, "pure-python"
else:
    crc32c, CRC32C_BACKEND = _crc32c_backend()


# ---------------------------------------------------------------------------------------------
# Archived layouts (docs/FORMAT.md, "Archived values")

_PRIM = {
    "bool": (1, 1), "u8": (1, 1), "i8": (1, 1), "u16": (2, 2), "i16": (2, 2),
    "char": (4, 4), "u32": (4, 4), "i32": (4, 4), "f32": (4, 4), "usize": (4, 4),
    "isize": (4, 4), "u64": (8, 8), "i64": (8, 8), "f64": (8, 8), "u128": (16, 16),
    "i128": (16, 16), "unit": (0, 1), "string": (8, 4), "duration": (16, 8),
}
_INT = {
    "u8": ("<B", 1), "i8": ("<b", 1), "u16": ("<H", 2), "i16": ("<h", 2), "u32": ("<I", 4),
    "i32": ("<i", 4), "usize": ("<I", 4), "isize": ("<i", 4), "u64": ("<Q", 8), "i64": ("<q", 8),
}
_UNIT = "unit"
BTREE_E = 5
GROUP_WIDTH = 16


def _align_up(x, a):
    return (x + a - 1) // a * a


def _record(types, start=0, align=1):
    """Layout of a #[repr(C)] struct of `types` after `start` bytes: (size, align, offsets)."""
    size, offsets = start, []
    for t in types:
        s, a = layout(t)
        size = _align_up(size, a)
        offsets.append(size)
        size += s
        align = max(align, a)
    return _align_up(size, align), align, offsets


def _fields(body):
    return [f["type"] for f in body["fields"]]


def layout(t):
    """(size, align) of the archived form of descriptor `t`."""
    if isinstance(t, str):
        return _PRIM[t]
    (kind, arg), = t.items()
    if kind in ("vec", "btree_map", "btree_set"):
        return (8, 4)
    if kind in ("hash_map", "hash_set"):
        return (12, 4)
    if kind == "box":
        return (4, 4)
    if kind == "option":
        size, align, _ = _record([arg], 1)
        return (size, align)
    if kind == "array":
        s, a = layout(arg["of"])
        return (s * arg["len"], a)
    if kind == "tuple":
        size, align, _ = _record(arg)
        return (size, align)
    if kind == "message":
        if "struct" in arg:
            size, align, _ = _record(_fields(arg["struct"]))
            return (size, align)
        size, align = 1, 1
        for v in arg["enum"]:
            s, a, _ = _record(_fields(v), 1)
            size, align = max(size, s), max(align, a)
        return (_align_up(size, align), align)
    raise FormatError("unknown type %r" % (t,))


class _Reader:
    __slots__ = ("b", "n")

    def __init__(self, b):
        self.b = b
        self.n = len(b)

    def fail(self, pos, reason):
        raise FormatError("at payload offset %d: %s" % (pos, reason))

    def bytes(self, pos, n):
        if pos < 0 or pos + n > len(self.b):
            self.fail(pos, "%d bytes at %d run past the end of the %d-byte payload"
                      % (n, pos, len(self.b)))
        return self.b[pos:pos + n]

    def unpack(self, fmt, pos):
        return struct.unpack(fmt, self.bytes(pos, struct.calcsize(fmt)))[0]

    def place(self, pos, size, align):
        if pos % align:
            self.fail(pos, "offset %d is not aligned to %d bytes" % (pos, align))
        self.bytes(pos, size)

    def rel_ptr(self, pos):
        target = pos + self.unpack("<i", pos)
        if target < 0 or target > len(self.b):
            self.fail(pos, "relative pointer leads outside the payload")
        return target

    def value(self, t, pos):
        size, align = layout(t)
        self.place(pos, size, align)
        if isinstance(t, str):
            return self.leaf(t, pos)
        (kind, arg), = t.items()
        if kind == "vec":
            n = self.unpack("<I", pos + 4)
            return self.elements(arg, self.rel_ptr(pos), n) if n else []
        if kind == "box":
            return self.value(arg, self.rel_ptr(pos))
        if kind == "option":
            tag = self.bytes(pos, 1)[0]
            if tag == 0:
                return None
            if tag != 1:
                self.fail(pos, "invalid Option tag %d" % tag)
            return self.value(arg, pos + _record([arg], 1)[2][0])
        if kind == "array":
            return self.elements(arg["of"], pos, arg["len"])
        if kind == "tuple":
            offsets = _record(arg)[2]
            return [self.value(e, pos + o) for e, o in zip(arg, offsets)]
        if kind == "hash_map":
            out = {}
            for k, v in self.hash_table(pos, arg["key"], arg["value"]):
                out[_key(k)] = v
            return out
        if kind == "hash_set":
            return [k for k, _ in self.hash_table(pos, arg, _UNIT)]
        if kind == "btree_map":
            out = {}
            for k, v in self.btree(pos, arg["key"], arg["value"]):
                out[_key(k)] = v
            return out
        if kind == "btree_set":
            return [k for k, _ in self.btree(pos, arg, _UNIT)]
        if kind == "message":
            if "struct" in arg:
                body = arg["struct"]
                return self.body(body, pos, _record(_fields(body))[2])
            tag = self.bytes(pos, 1)[0]
            variants = arg["enum"]
            if tag >= len(variants):
                self.fail(pos, "invalid tag %d for enum %s" % (tag, arg["name"]))
            v = variants[tag]
            if v["shape"] == "unit":
                return v["name"]
            return {v["name"]: self.body(v, pos, _record(_fields(v), 1)[2])}
        self.fail(pos, "unknown type %r" % (t,))

    def leaf(self, t, pos):
        if t in _INT:
            fmt, _ = _INT[t]
            return self.unpack(fmt, pos)
        if t == "bool":
            b = self.bytes(pos, 1)[0]
            if b > 1:
                self.fail(pos, "invalid bool byte %#04x" % b)
            return b == 1
        if t == "char":
            c = self.unpack("<I", pos)
            if c > 0x10FFFF or 0xD800 <= c <= 0xDFFF:
                self.fail(pos, "invalid char %#x" % c)
            return chr(c)
        if t in ("u128", "i128"):
            x = int.from_bytes(self.bytes(pos, 16), "little", signed=(t == "i128"))
            return x if -(1 << 63) <= x < (1 << 64) else str(x)
        if t == "f32":
            return _float(self.unpack("<f", pos))
        if t == "f64":
            return _float(self.unpack("<d", pos))
        if t == "unit":
            return None
        if t == "string":
            return self.string(pos)
        if t == "duration":
            secs, nanos = self.unpack("<Q", pos), self.unpack("<I", pos + 8)
            if nanos >= 1000000000:
                self.fail(pos + 8, "duration nanoseconds %d >= 10^9" % nanos)
            return {"secs": secs, "nanos": nanos}
        self.fail(pos, "unknown type %r" % (t,))

    def body(self, body, pos, offsets):
        values = [self.value(f["type"], pos + o) for f, o in zip(body["fields"], offsets)]
        shape = body["shape"]
        if shape == "unit":
            return None
        if shape == "tuple":
            return values[0] if len(values) == 1 else values
        return {f["name"]: v for f, v in zip(body["fields"], values)}

    def elements(self, t, start, n):
        size, align = layout(t)
        self.place(start, size * n, align)
        return [self.value(t, start + i * size) for i in range(n)]

    def string(self, pos):
        repr_ = self.bytes(pos, 8)
        if repr_[0] & 0xC0 != 0x80:
            n = repr_.find(b"\xff") if isinstance(repr_, bytes) else bytes(repr_).find(b"\xff")
            data = repr_[:8 if n < 0 else n]
        else:
            raw = self.unpack("<I", pos)
            n = (raw & 0x3F) | ((raw & ~0xFF) >> 2)
            if n <= 8:
                self.fail(pos, "out-of-line string of only %d bytes" % n)
            target = pos + self.unpack("<i", pos + 4)
            data = self.bytes(target, n)
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            self.fail(pos, "string is not UTF-8: %s" % e)

    def hash_table(self, pos, kt, vt):
        n, cap = self.unpack("<I", pos + 4), self.unpack("<I", pos + 8)
        if n == 0:
            return []
        if n >= cap:
            self.fail(pos, "hash table length %d >= capacity %d" % (n, cap))
        ctrl = self.rel_ptr(pos)
        esize, ealign, (koff, voff) = _record([kt, vt])
        control = self.bytes(ctrl, _align_up(cap, GROUP_WIDTH) + GROUP_WIDTH - 1)
        if ctrl - cap * esize < 0 or ctrl % ealign:
            self.fail(ctrl, "misaligned or misplaced hash table buckets")
        out = []
        for i in range(cap):
            if control[i] & 0x80:
                continue
            at = ctrl - (i + 1) * esize
            out.append((self.value(kt, at + koff), self.value(vt, at + voff)))
        if len(out) != n:
            self.fail(pos, "hash table holds %d entries, its length says %d" % (len(out), n))
        return out

    def btree(self, pos, kt, vt):
        n = self.unpack("<I", pos + 4)
        if n == 0:
            return []
        (ks, ka), (vs, va) = layout(kt), layout(vt)
        keys = _align_up(1, ka)
        values = _align_up(keys + BTREE_E * ks, va)
        node_align = max(ka, va)
        tail = _align_up(_align_up(values + BTREE_E * vs, node_align), 4)
        align = max(node_align, 4)
        leaf_size = _align_up(tail + 4, align)
        inner_size = _align_up(tail + 4 * (BTREE_E + 1), align)
        out = []

        def entry(at, i):
            if len(out) >= n:
                self.fail(at, "B-tree holds more entries than its length %d" % n)
            out.append((self.value(kt, at + keys + i * ks), self.value(vt, at + values + i * vs)))

        def visit(at, depth):
            if depth > 40:
                self.fail(at, "B-tree nodes nest too deeply")
            kind = self.bytes(at, 1)[0]
            if kind == 0:
                self.place(at, leaf_size, align)
                count = self.unpack("<I", at + tail)
                if count > BTREE_E:
                    self.fail(at, "B-tree leaf with %d entries" % count)
                for i in range(count):
                    entry(at, i)
            elif kind == 1:
                self.place(at, inner_size, align)
                for i in range(BTREE_E):
                    p = at + tail + 4 * i
                    if self.unpack("<i", p) != 1:
                        visit(self.rel_ptr(p), depth + 1)
                    entry(at, i)
                p = at + tail + 4 * BTREE_E
                if self.unpack("<i", p) != 1:
                    visit(self.rel_ptr(p), depth + 1)
            else:
                self.fail(at, "invalid B-tree node kind %d" % kind)

        visit(self.rel_ptr(pos), 0)
        if len(out) != n:
            self.fail(pos, "B-tree holds %d entries, its length says %d" % (len(out), n))
        return out


def _float(x):
    return None if x != x or x in (float("inf"), float("-inf")) else x


def _key(k):
    """A map key as a JSON object key, as serde_json makes it."""
    if isinstance(k, bool):
        return "true" if k else "false"
    if isinstance(k, int):
        return str(k)
    if isinstance(k, str):
        return k
    raise FormatError("a map key must be a string, integer, bool or char, not %r" % (k,))


# ---------------------------------------------------------------------------------------------
# Compiled decoders: the descriptor is walked once per queue, not once per record. Each type
# becomes a function (payload, pos) -> value that checks the same bounds, alignment and validity
# as `_Reader.value` (which stays the reference, and decodes the map types). A value at a fixed
# offset inside a checked parent (a struct's field, an option's value, a tuple's or an array's
# element) is in bounds and aligned by construction, so only values reached through a relative
# pointer (vec, box, out-of-line string) and the root are checked.

def _fail(pos, reason):
    raise FormatError("at payload offset %d: %s" % (pos, reason))


def _place(b, pos, size, align):
    _Reader(b).place(pos, size, align)


def _checked(size, align, inner):
    """`inner` behind the bounds and alignment check of a value at an unchecked position."""
    def f(b, pos):
        if pos % align or pos < 0 or pos + size > len(b):
            _place(b, pos, size, align)
        return inner(b, pos)
    return f


def _compile(t, checked=True):
    """The decoder of descriptor `t`; `checked=False` when the parent already checked the
    value's bytes."""
    size, align = layout(t)
    f = _compile_unchecked(t)
    return _checked(size, align, f) if checked else f


def _compile_unchecked(t):
    if isinstance(t, str):
        if t in _INT:
            unpack = struct.Struct(_INT[t][0]).unpack_from
            return lambda b, pos: unpack(b, pos)[0]
        if t == "string":
            unpack_ii = struct.Struct("<Ii").unpack_from

            def f(b, pos):
                if b[pos] & 0xC0 != 0x80:
                    n = b.find(b"\xff", pos, pos + 8)
                    data = b[pos:pos + 8 if n < 0 else n]
                else:
                    raw, rel = unpack_ii(b, pos)
                    n = (raw & 0x3F) | ((raw & ~0xFF) >> 2)
                    if n <= 8:
                        _fail(pos, "out-of-line string of only %d bytes" % n)
                    at = pos + rel
                    if at < 0 or at + n > len(b):
                        _fail(at, "%d bytes at %d run past the end of the %d-byte payload"
                              % (n, at, len(b)))
                    data = b[at:at + n]
                try:
                    return data.decode("utf-8")
                except UnicodeDecodeError as e:
                    _fail(pos, "string is not UTF-8: %s" % e)
            return f
        return lambda b, pos: _Reader(b).leaf(t, pos)
    (kind, arg), = t.items()
    if kind == "vec":
        el = _compile(arg, checked=False)
        esize, ealign = layout(arg)
        unpack_iI = struct.Struct("<iI").unpack_from

        def f(b, pos):
            rel, n = unpack_iI(b, pos)
            if not n:
                return []
            start = pos + rel
            if start < 0 or start > len(b):
                _fail(pos, "relative pointer leads outside the payload")
            if start % ealign or start + esize * n > len(b):
                _place(b, start, esize * n, ealign)
            return [el(b, start + i * esize) for i in range(n)]
        return f
    if kind == "box":
        inner = _compile(arg)
        return lambda b, pos: inner(b, _Reader(b).rel_ptr(pos))
    if kind == "option":
        inner = _compile(arg, checked=False)
        off = _record([arg], 1)[2][0]

        def f(b, pos):
            tag = b[pos]
            if tag == 0:
                return None
            if tag != 1:
                _fail(pos, "invalid Option tag %d" % tag)
            return inner(b, pos + off)
        return f
    if kind == "array":
        el = _compile(arg["of"], checked=False)
        esize = layout(arg["of"])[0]
        n = arg["len"]
        return lambda b, pos: [el(b, pos + i * esize) for i in range(n)]
    if kind == "tuple":
        parts = list(zip([_compile(e, checked=False) for e in arg], _record(arg)[2]))
        return lambda b, pos: [g(b, pos + o) for g, o in parts]
    if kind == "message":
        if "struct" in arg:
            return _compile_body(arg["struct"], _record(_fields(arg["struct"]))[2])
        variants = []
        for v in arg["enum"]:
            if v["shape"] == "unit":
                variants.append((v["name"], None))
            else:
                variants.append((v["name"], _compile_body(v, _record(_fields(v), 1)[2])))
        count, name = len(variants), arg["name"]

        def f(b, pos):
            tag = b[pos]
            if tag >= count:
                _fail(pos, "invalid tag %d for enum %s" % (tag, name))
            vname, body = variants[tag]
            if body is None:
                return vname
            return {vname: body(b, pos)}
        return f
    # maps and sets: the reference decoder
    return lambda b, pos: _Reader(b).value(t, pos)


def _compile_body(body, offsets):
    shape = body["shape"]
    fields = [(f["name"], _compile(f["type"], checked=False), o)
              for f, o in zip(body["fields"], offsets)]
    if shape == "unit":
        return lambda b, pos: None
    if shape == "tuple":
        if len(fields) == 1:
            _, g, o = fields[0]
            return lambda b, pos: g(b, pos + o)
        return lambda b, pos: [g(b, pos + o) for _, g, o in fields]
    return lambda b, pos: {name: g(b, pos + o) for name, g, o in fields}


def compile_decoder(descriptor):
    """A function payload -> value equivalent to `decode(descriptor, payload)`, with the
    descriptor's layouts worked out once (use it for many records of one type)."""
    size, align = layout(descriptor)
    root = _compile(descriptor, checked=False)

    def decode_payload(payload):
        n = len(payload)
        if n < size:
            raise FormatError("the payload has %d bytes; the root alone needs %d" % (n, size))
        pos = n - size
        if pos % align:
            _place(payload, pos, size, align)
        return root(payload, pos)
    return decode_payload


def decode(descriptor, payload):
    """Validates `payload` (a record's bytes, archived root at the end) as a value of the
    descriptor's type and returns it as JSON-like Python values."""
    size, _ = layout(descriptor)
    if len(payload) < size:
        raise FormatError("the payload has %d bytes; the root alone needs %d"
                          % (len(payload), size))
    return _Reader(payload).value(descriptor, len(payload) - size)


# ---------------------------------------------------------------------------------------------
# Queue directory (docs/FORMAT.md, "Meta file", "Segment file", "Records", "Schema file")

META_SIZE = 8192
EMPTY, RESERVED, COMMITTED, ABANDONED, END = range(5)


class Queue:
    """An open queue directory (read-only)."""

    def __init__(self, path, verify_crc=True, on_error=None):
        self.path = path
        self.verify_crc = verify_crc
        self.on_error = on_error or _report
        with open(os.path.join(path, "queue.meta"), "rb") as f:
            head = f.read(META_SIZE)
        if len(head) < 324 or head[:8] != b"RPLQMETA":
            raise FormatError("%s: not a repliq meta file" % path)
        version, = struct.unpack_from("<I", head, 8)
        # Meta version 2 differs from 1 only in the consumer cursor slots, which this reader
        # does not use (docs/FORMAT.md, "Compatibility").
        if version not in (1, 2):
            raise FormatError("%s: unknown format version %d" % (path, version))
        if struct.unpack_from("<I", head, 320)[0] != crc32c(head[:320]):
            raise FormatError("%s: meta file header crc mismatch" % path)
        self.fingerprint, self.segment_size = struct.unpack_from("<QQ", head, 16)
        name_len, = struct.unpack_from("<I", head, 52)
        self.type_name = head[64:64 + name_len].decode("utf-8")
        try:
            with open(os.path.join(path, "schema.json"), "rb") as f:
                self.schema = json.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            raise FormatError("%s has no schema.json" % path) from None
        if self.schema.get("format") != "repliq.schema.v1":
            raise FormatError("unknown schema format %r" % self.schema.get("format"))
        if int(self.schema["fingerprint"], 16) != self.fingerprint \
                or self.schema["name"] != self.type_name:
            raise FormatError("schema.json describes another type than queue.meta")
        self.root = self.schema["root"]
        self._decode = compile_decoder(self.root)

    def segments(self):
        names = [n for n in os.listdir(self.path) if n.endswith(".seg") and len(n) == 24
                 and n[:20].isdigit()]
        return sorted(int(n[:20]) for n in names)

    def _open_segment(self, first):
        path = os.path.join(self.path, "%020d.seg" % first)
        with open(path, "rb") as f:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if m[:8] != b"RPLQSEGM":
            raise FormatError("%s: not a repliq segment" % path)
        data_start, = struct.unpack_from("<I", m, 12)
        return path, m, data_start

    def __iter__(self):
        for rec in self.records():
            yield rec.message

    def records(self, start=None, follow=False, poll=0.05):
        """Yields `Record(seq, time, message)` from sequence `start` (default: the first
        stored record); with `follow`, waits for new records forever."""
        segs = self.segments()
        while not segs:
            if not follow:
                return
            time.sleep(poll)
            segs = self.segments()
        if start is None:
            start = segs[0]
        first = max([s for s in segs if s <= start] or [segs[0]])
        path, m, pos = self._open_segment(first)
        seq = first
        word_at = struct.Struct("<Q").unpack_from
        header_at = struct.Struct("<QIIQ").unpack_from
        crc_head = struct.Struct("<QIQ").pack
        decode_payload, verify, crc, on_error = self._decode, self.verify_crc, crc32c, self.on_error
        while True:
            if pos + 32 > len(m):
                state = END
            else:
                word, = word_at(m, pos)
                state = word >> 61
            if state == COMMITTED:
                rseq, rcrc, length, wtime = header_at(m, pos + 8)
                if length != word & 0xFFFFFFFF or rseq != seq:
                    raise FormatError("%s offset %d: bad record header" % (path, pos))
                if seq >= start:
                    payload = m[pos + 32:pos + 32 + length]
                    if verify and crc(payload, crc(crc_head(rseq, length, wtime))) != rcrc:
                        on_error(path, pos, seq, "crc32c mismatch")
                    else:
                        try:
                            message = decode_payload(payload)
                        except FormatError as e:
                            on_error(path, pos, seq, str(e))
                        else:
                            yield Record(seq, wtime, message)
                seq += 1
                pos += (32 + length + 15) & ~15
            elif state == ABANDONED:
                pos += ((word >> 32) & 0x1FFFFFFF) * 16
            elif state == END:
                nxt = os.path.join(self.path, "%020d.seg" % seq)
                while not os.path.exists(nxt):
                    if not follow:
                        return
                    time.sleep(poll)
                path, m, pos = self._open_segment(seq)
            elif state in (EMPTY, RESERVED):
                if not follow:
                    return
                time.sleep(poll)
            else:
                raise FormatError("%s offset %d: invalid record state %d" % (path, pos, state))


def _report(path, offset, seq, reason):
    import sys
    sys.stderr.write("repliq_reader: %s offset %d: record %d skipped: %s\n"
                     % (path, offset, seq, reason))


def open_queue(path, **kwargs):
    """Opens the queue directory at `path` for reading."""
    return Queue(path, **kwargs)
