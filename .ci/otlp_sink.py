#!/usr/bin/env python3
"""An OTLP/gRPC trace receiver on loopback for repliqd's trace test (repliqd/tests/traces_otlp.rs).

It is oteltest's `otelsink` (PyPI `oteltest`, installed by .ci/install-otelsink.sh) with one
change: `otelsink` binds 0.0.0.0:4317, this binds 127.0.0.1 on a port the kernel picks. The
gRPC service is otelsink's own (`oteltest.sink.private._TraceServiceServicer`, fed by a
`oteltest.sink.handler.RequestHandler`); every span received is written to standard output as
one JSON object per line:

  {"service": ..., "instance": ..., "trace_id": hex, "span_id": hex, "parent_span_id": hex or "",
   "name": ..., "start_ns": int, "end_ns": int, "attributes": {key: value}}

The first line is `listening PORT`. It stops when standard input closes (its parent went away).
"""

import json
import sys
import threading
from concurrent import futures

import grpc  # type: ignore
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc  # type: ignore
from oteltest.sink.handler import RequestHandler
from oteltest.sink.private import _TraceServiceServicer


def any_value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


class JsonLinesHandler(RequestHandler):
    def __init__(self):
        self.lock = threading.Lock()

    def handle_logs(self, request, headers):  # noqa: ARG002
        pass

    def handle_metrics(self, request, headers):  # noqa: ARG002
        pass

    def handle_trace(self, request, headers):  # noqa: ARG002
        lines = []
        for rs in request.resource_spans:
            res = {kv.key: any_value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for span in ss.spans:
                    lines.append(
                        json.dumps(
                            {
                                "service": res.get("service.name"),
                                "instance": res.get("service.instance.id"),
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex(),
                                "name": span.name,
                                "start_ns": span.start_time_unix_nano,
                                "end_ns": span.end_time_unix_nano,
                                "attributes": {
                                    kv.key: any_value(kv.value) for kv in span.attributes
                                },
                            },
                            sort_keys=True,
                        )
                    )
        with self.lock:
            for line in lines:
                sys.stdout.write(line + "\n")
            sys.stdout.flush()


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
        _TraceServiceServicer(JsonLinesHandler().handle_trace), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening {port}", flush=True)
    # Until the parent closes our standard input (or dies).
    sys.stdin.read()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
