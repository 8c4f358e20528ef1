"""Throughput of the Python reader: python3 clients/python/bench.py DIR [REPEATS]

Reads every record of the queue at DIR (crc32c checked, decoded with schema.json) REPEATS times
(default 3) and prints messages per second for each pass and the best, with the crc32c backend in
use. Write a queue to read with `cargo run -p repliq-tests --bin write_every_type -- --orders DIR
COUNT`. No thresholds: it measures, it does not judge.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import repliq_reader  # noqa: E402


def main():
    path = sys.argv[1]
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    rates, cpu_rates = [], []
    for i in range(repeats):
        q = repliq_reader.open_queue(path)
        start, cpu = time.perf_counter(), time.process_time()
        n = 0
        for _ in q.records():
            n += 1
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        rates.append(n / elapsed)
        cpu_rates.append(n / cpu)
        print("pass %d: %d messages in %.3f s (%.3f s of CPU): %.0f messages/s, %.0f per CPU-second"
              % (i + 1, n, elapsed, cpu, rates[-1], cpu_rates[-1]))
    # On a shared machine the wall-clock rate depends on the neighbours; the CPU-time rate
    # much less (it is what one free core would reach).
    print("best: %.0f messages/s, %.0f per CPU-second (crc32c: %s, Python %s)"
          % (max(rates), max(cpu_rates), repliq_reader.CRC32C_BACKEND, sys.version.split()[0]))


if __name__ == "__main__":
    main()
