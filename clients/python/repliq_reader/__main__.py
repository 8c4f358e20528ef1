"""python3 -m repliq_reader cat|tail DIR [--from SEQ]: JSON lines like `repliq cat` / `repliq tail --json`."""

import argparse
import json
import sys

from . import open_queue


def main(argv=None):
    p = argparse.ArgumentParser(prog="repliq_reader")
    p.add_argument("command", choices=["cat", "tail", "schema"])
    p.add_argument("dir")
    p.add_argument("--from", dest="start", type=int, default=None)
    args = p.parse_args(argv)
    q = open_queue(args.dir)
    if args.command == "schema":
        print(json.dumps(q.schema, indent=2))
        return 0
    try:
        for rec in q.records(start=args.start, follow=args.command == "tail"):
            line = {"seq": rec.seq, "time": rec.time, "message": rec.message}
            sys.stdout.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
            sys.stdout.flush()
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
