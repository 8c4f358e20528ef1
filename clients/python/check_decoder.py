"""The compiled decoder against the reference one: python3 clients/python/check_decoder.py DIR...

For the first 200 committed records of each queue directory: the compiled decoder
(`compile_decoder`, what `Queue.records` uses) must return what the reference decoder (`decode`)
returns, and on 200 copies of each payload with 1-4 random bytes overwritten (seeded) both must
agree too: the same value, or both a `FormatError`. Any other exception is a failure: bad bytes
must never escape as IndexError, struct.error or the like. Run by .ci/python-reader.sh.
"""

import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import repliq_reader as r  # noqa: E402


def payloads(q, limit=200):
    out = []
    for first in q.segments():
        _, m, pos = q._open_segment(first)
        while len(out) < limit and pos + 32 <= len(m):
            word, = struct.unpack_from("<Q", m, pos)
            if word >> 61 == r.ABANDONED:
                pos += ((word >> 32) & 0x1FFFFFFF) * 16
                continue
            if word >> 61 != r.COMMITTED:
                break
            length, = struct.unpack_from("<I", m, pos + 20)
            out.append(bytes(m[pos + 32:pos + 32 + length]))
            pos += (32 + length + 15) & ~15
    return out


def outcome(decode, payload):
    try:
        return ("value", decode(payload))
    except r.FormatError:
        return ("FormatError",)


def main():
    rng = random.Random(7)
    failures = 0
    for path in sys.argv[1:]:
        q = r.open_queue(path)
        fast = r.compile_decoder(q.root)
        reference = lambda b: r.decode(q.root, b)  # noqa: E731
        records = payloads(q)
        assert records, "%s: no records" % path
        agree = errors = 0
        for payload in records:
            cases = [payload]
            for _ in range(200):
                b = bytearray(payload)
                for _ in range(rng.randint(1, 4)):
                    b[rng.randrange(len(b))] = rng.randrange(256)
                cases.append(bytes(b))
            for case in cases:
                try:
                    a, c = outcome(fast, case), outcome(reference, case)
                except Exception as e:  # anything but FormatError
                    failures += 1
                    print("%s: %s escaped: %s" % (path, type(e).__name__, e))
                    continue
                if a != c:
                    failures += 1
                    print("%s: compiled %r, reference %r for %s" % (path, a, c, case.hex()))
                else:
                    agree += 1
                    errors += a[0] == "FormatError"
        print("check_decoder: %s: %d records, %d payloads agree (%d FormatError)"
              % (path, len(records), agree, errors))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
