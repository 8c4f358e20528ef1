"""repliq-reader (or python3 -m repliq_reader) cat|tail|schema DIR [--from SEQ] [--rfc3339]:
JSON lines like `repliq cat` / `repliq tail`."""

import argparse
import json
import sys
import time

from . import CRC32C_BACKEND, open_queue


def rfc3339(nanos):
    """Nanoseconds since the Unix epoch as `repliq --rfc3339` prints them (UTC, 9 digits)."""
    secs, frac = divmod(nanos, 1000000000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + ".%09dZ" % frac


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="repliq-reader",
        description="Print the messages of a repliq queue directory as JSON lines, decoded with "
                    "its schema.json (crc32c: %s)." % CRC32C_BACKEND)
    p.add_argument("command", choices=["cat", "tail", "schema"],
                   help="cat: every stored message; tail: the same, then follow; schema: print "
                        "schema.json")
    p.add_argument("dir", help="the queue directory")
    p.add_argument("--from", dest="start", type=int, default=None,
                   help="start at this sequence number")
    p.add_argument("--rfc3339", action="store_true",
                   help="times as RFC 3339 in UTC instead of nanoseconds since the Unix epoch")
    args = p.parse_args(argv)
    q = open_queue(args.dir)
    if args.command == "schema":
        print(json.dumps(q.schema, indent=2))
        return 0
    follow = args.command == "tail"
    out, dumps = sys.stdout, json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    try:
        for rec in q.records(start=args.start, follow=follow):
            t = rfc3339(rec.time) if args.rfc3339 else rec.time
            out.write(dumps({"seq": rec.seq, "time": t, "message": rec.message}) + "\n")
            if follow:
                out.flush()
        out.flush()
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
