#!/usr/bin/env python3
"""Checks deploy/grafana/repliq.json against Grafana's dashboard model (PyPI's
grafana-foundation-sdk, generated from Grafana's schema): the dashboard is read into the
model and written back, and every key of the file must survive the round trip (a misspelled or
misplaced key is dropped by the model and reported here). Two keys that Grafana's UI writes but
the model does not carry are allowed: an annotation's `builtIn` and a variable's `definition`.
The model does not check value types; the panels' `gridPos` numbers are checked here.

    python dashboard_schema.py deploy/grafana/repliq.json
"""

import json
import sys

from grafana_foundation_sdk.models import dashboard as model

ALLOWED_LOSSES = {"builtIn", "definition"}


def plain(value):
    if hasattr(value, "to_json"):
        return plain(value.to_json())
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def compare(original, written, path, problems):
    if isinstance(original, dict):
        if not isinstance(written, dict):
            problems.append(f"{path}: an object became {type(written).__name__}")
            return
        for key, value in original.items():
            if key not in written:
                if key not in ALLOWED_LOSSES:
                    problems.append(f"{path}.{key}: not in Grafana's dashboard model")
                continue
            compare(value, written[key], f"{path}.{key}", problems)
    elif isinstance(original, list):
        if not isinstance(written, list) or len(original) != len(written):
            problems.append(f"{path}: list changed")
            return
        for i, (a, b) in enumerate(zip(original, written)):
            compare(a, b, f"{path}[{i}]", problems)
    elif original != written or type(original) is not type(written):
        problems.append(f"{path}: {original!r} became {written!r}")


def main():
    path = sys.argv[1]
    original = json.load(open(path))
    written = plain(model.Dashboard.from_json(original))
    problems = []
    compare(original, written, "$", problems)
    for panel in original.get("panels", []):
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")):
            problems.append(f"panel {panel.get('title')!r}: gridPos needs integer x, y, w, h")
    if problems:
        print("\n".join(f"dashboard schema: {p}" for p in problems), file=sys.stderr)
        raise SystemExit(1)
    print(f"dashboard schema: {path} round-trips through Grafana's dashboard model")


if __name__ == "__main__":
    main()
