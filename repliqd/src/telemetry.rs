//! Logs and traces of the daemon: one `tracing` subscriber with two outputs.
//!
//! * **Logs** on standard error, filtered by `REPLIQ_LOG` (default `info`): text for people
//!   (colours only on a terminal) or one JSON object per line with stable keys
//!   (`docs/OBSERVABILITY.md`, "Logs").
//! * **Traces** over OTLP/gRPC (feature `otlp`), off unless configured: by the `tracing:` section
//!   of the configuration or by the standard `OTEL_*` variables (`OTEL_EXPORTER_OTLP_ENDPOINT`
//!   or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_EXPORTER`,
//!   `OTEL_SDK_DISABLED`, `OTEL_BSP_*`, `OTEL_TRACES_SAMPLER`, `OTEL_RESOURCE_ATTRIBUTES`). Only
//!   the spans and events of `repliq` and `repliqd` are exported (never those of the gRPC and
//!   HTTP stacks, whose exporter would otherwise trace itself).
//!
//! The exporter's gRPC channel lives on the Tokio runtime: call [`init`] inside it (within
//! `Runtime::enter` or `block_on`) and [`Telemetry::shutdown`] outside of any async task, before
//! the runtime is dropped, so the last spans are flushed.

use serde::Deserialize;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For people; colours only when standard error is a terminal.
    Text,
    /// One JSON object per line (for Fluent Bit, Fluentd, Loki, ...).
    Json,
}

/// `tracing:` in the configuration: where spans go. The standard `OTEL_*` variables fill in
/// what is not set here; `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true` turns tracing
/// off whatever this says.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// The OTLP/gRPC endpoint, e.g. `http://jaeger-collector:4317` (absent:
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, then `OTEL_EXPORTER_OTLP_ENDPOINT`).
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the spans (absent: `OTEL_SERVICE_NAME`, then `repliqd`).
    #[serde(default)]
    pub service_name: Option<String>,
}

/// The names of the spans the daemon and the library open, for dashboards and tests
/// (`docs/OBSERVABILITY.md`, "Traces").
pub mod span {
    /// A lease takeover by this node: the root of `LEASE_ACQUIRE` and `PROMOTE`.
    pub const FAILOVER: &str = "election.failover";
    /// The compare-and-swap write that takes the lease.
    pub const LEASE_ACQUIRE: &str = "election.lease_acquire";
    /// The queue's promotion to primary in the new epoch.
    pub const PROMOTE: &str = "election.promote";
    /// A primary that is not (or no longer) the lease holder refusing enqueues.
    pub const FENCE: &str = "election.fence";
    /// One replica's stream, from its subscription to its end (primary side).
    pub const STREAM: &str = "replication.stream";
    /// A replica receiving what it lacks after subscribing, until its lag is 0.
    pub const CATCH_UP: &str = "replication.catch_up";
    /// A replica copied from the primary's oldest segment (retention deleted what it needed).
    pub const RESYNC: &str = "replication.resync";
    /// One stream received from a primary (replica side).
    pub const RECEIVE: &str = "replication.receive";
    /// A remote producer's stream (the client service), a child of the stream's `traceparent`
    /// metadata if it carried one.
    pub const CLIENT_PRODUCE: &str = "client.produce";
    /// One batch of a remote producer, from its arrival to its acknowledgement (after the
    /// replicas' on a synchronous queue); a child of the batch's `traceparent`, else of the
    /// stream.
    pub const CLIENT_PRODUCE_BATCH: &str = "client.produce_batch";
    /// A remote consumer's stream, a child of the stream's `traceparent` metadata if any.
    pub const CLIENT_CONSUME: &str = "client.consume";
    /// One delivery of records to a remote consumer (a `Records` message), a child of the
    /// `traceparent` of the newest `Fetch` that carried one, else of the stream.
    pub const CLIENT_FETCH: &str = "client.fetch";
}

/// Makes `span` a child of the caller's trace: `traceparent` is a W3C `traceparent` header
/// value (`00-<32 hex trace id>-<16 hex span id>-<flags>`), `tracestate` its companion.
/// Call it before the span is first entered. Empty or malformed values are ignored (the span
/// keeps its local parent); so is everything in a build without the `otlp` feature.
pub fn follow_remote_parent(span: &tracing::Span, traceparent: &str, tracestate: Option<&str>) {
    #[cfg(feature = "otlp")]
    {
        use opentelemetry::propagation::TextMapPropagator;
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        if traceparent.is_empty() {
            return;
        }
        let mut carrier = std::collections::HashMap::new();
        carrier.insert("traceparent".to_owned(), traceparent.to_owned());
        if let Some(state) = tracestate {
            carrier.insert("tracestate".to_owned(), state.to_owned());
        }
        let cx = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
        if cx.span().span_context().is_valid() {
            // Refused only for a span already started or not recorded: it then keeps its
            // local parent, which is what a malformed value gets too.
            let _ = span.set_parent(cx);
        }
    }
    #[cfg(not(feature = "otlp"))]
    let _ = (span, traceparent, tracestate);
}

/// Where spans are exported, once the configuration and the environment are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceTarget {
    /// The OTLP/gRPC endpoint.
    pub endpoint: String,
    /// `service.name`.
    pub service_name: String,
}

/// Decides whether and where spans are exported, from the `tracing:` section and the
/// environment (`var` reads a variable; [`std::env::var`] in the daemon).
///
/// # Errors
///
/// A sentence naming the variable whose value this build cannot honour (an exporter other
/// than `otlp` or `none`, a protocol other than `grpc`).
pub fn trace_target(
    config: Option<&TracingConfig>,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<TraceTarget>, String> {
    let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    match var("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
        None | Some("otlp") => {}
        Some("none") => return Ok(None),
        Some(other) => {
            return Err(format!(
                "OTEL_TRACES_EXPORTER={other}: repliqd exports traces with `otlp` (or `none`)"
            ));
        }
    }
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(p) = var(name) {
            if p.trim() != "grpc" {
                return Err(format!(
                    "{name}={p}: repliqd speaks OTLP over gRPC only (`grpc`, port 4317)"
                ));
            }
            break;
        }
    }
    let endpoint = config
        .and_then(|c| c.otlp_endpoint.clone())
        .or_else(|| var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    let service_name = var("OTEL_SERVICE_NAME")
        .or_else(|| config.and_then(|c| c.service_name.clone()))
        .unwrap_or_else(|| "repliqd".to_owned());
    Ok(Some(TraceTarget {
        endpoint,
        service_name,
    }))
}

/// What [`init`] set up; [`Telemetry::shutdown`] flushes the spans not yet exported.
#[derive(Debug, Default)]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    /// Where spans go, if anywhere.
    pub target: Option<TraceTarget>,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter (waits at most a few seconds).
    /// Call it outside of async code, while the runtime that [`init`] ran in is still alive.
    pub fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown_with_timeout(std::time::Duration::from_secs(5))
        {
            eprintln!("repliqd: flushing the last spans failed: {e}");
        }
    }
}

/// Installs the global subscriber: logs in `format` on standard error and, when configured,
/// traces over OTLP (`node` becomes the spans' `service.instance.id`).
///
/// # Errors
///
/// A sentence if tracing is configured but cannot start (a bad `OTEL_*` value or endpoint, or
/// a build without the `otlp` feature).
pub fn init(
    format: LogFormat,
    tracing: Option<&TracingConfig>,
    node: &str,
) -> Result<Telemetry, String> {
    let target = trace_target(tracing, |name| std::env::var(name).ok())?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("REPLIQ_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in files or log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => fmt.boxed(),
        // One object per line with stable keys: timestamp, level, target, message, then the
        // event's own fields (node, queue, epoch, replica, task, error, ...) at the top level.
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .boxed(),
    }
    .with_filter(filter);
    let (traces, provider) = traces_layer(target.as_ref(), node)?;
    let mut layers: Vec<BoxedLayer> = vec![logs.boxed()];
    layers.extend(traces);
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| format!("installing the log subscriber: {e}"))?;
    #[cfg(not(feature = "otlp"))]
    let () = provider;
    Ok(Telemetry {
        #[cfg(feature = "otlp")]
        provider,
        target,
    })
}

/// One output of the subscriber.
type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The layer exporting spans, when there is a target.
#[cfg(feature = "otlp")]
fn traces_layer(
    target: Option<&TraceTarget>,
    node: &str,
) -> Result<
    (
        Option<BoxedLayer>,
        Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    ),
    String,
> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;

    let Some(target) = target else {
        return Ok((None, None));
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(target.endpoint.clone())
        .build()
        .map_err(|e| format!("the OTLP exporter to {}: {e}", target.endpoint))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(target.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            node.to_owned(),
        ))
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("repliqd");
    // Only our own spans: the exporter's gRPC stack (tonic, h2, hyper) must not trace itself.
    let only_ours = tracing_subscriber::filter::Targets::new()
        .with_target("repliq", tracing::Level::INFO)
        .with_target("repliqd", tracing::Level::INFO);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_filter(only_ours)
        .boxed();
    Ok((Some(layer), Some(provider)))
}

/// Without the `otlp` feature: an error if tracing was asked for.
#[cfg(not(feature = "otlp"))]
fn traces_layer(
    target: Option<&TraceTarget>,
    _node: &str,
) -> Result<(Option<BoxedLayer>, ()), String> {
    match target {
        None => Ok((None, ())),
        Some(t) => Err(format!(
            "traces to {} are configured, but this repliqd was built without the `otlp` feature",
            t.endpoint
        )),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn traces_are_off_unless_an_endpoint_is_configured() {
        assert_eq!(trace_target(None, env(&[])), Ok(None));
        assert_eq!(
            trace_target(None, env(&[("OTEL_SERVICE_NAME", "x")])),
            Ok(None)
        );
    }

    #[test]
    fn the_standard_variables_configure_traces() {
        let t = trace_target(
            None,
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                ("OTEL_SERVICE_NAME", "repliqd-a"),
            ]),
        );
        assert_eq!(
            t,
            Ok(Some(TraceTarget {
                endpoint: "http://127.0.0.1:4317".into(),
                service_name: "repliqd-a".into()
            }))
        );
        // The traces-specific endpoint wins over the general one.
        let t = trace_target(
            None,
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4317"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (t.endpoint.as_str(), t.service_name.as_str()),
            ("http://b:4317", "repliqd")
        );
    }

    #[test]
    fn the_config_section_wins_over_the_endpoint_variable_and_none_turns_traces_off() {
        let config = TracingConfig {
            otlp_endpoint: Some("http://jaeger:4317".into()),
            service_name: Some("repliq-prod".into()),
        };
        let t = trace_target(
            Some(&config),
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4317")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (t.endpoint.as_str(), t.service_name.as_str()),
            ("http://jaeger:4317", "repliq-prod")
        );
        for off in [
            [("OTEL_TRACES_EXPORTER", "none")],
            [("OTEL_SDK_DISABLED", "true")],
        ] {
            assert_eq!(trace_target(Some(&config), env(&off)), Ok(None), "{off:?}");
        }
    }

    #[test]
    fn an_exporter_or_protocol_this_build_lacks_is_refused_by_name() {
        let e = trace_target(None, env(&[("OTEL_TRACES_EXPORTER", "zipkin")])).unwrap_err();
        assert!(e.contains("OTEL_TRACES_EXPORTER=zipkin"), "{e}");
        let e = trace_target(
            None,
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ]),
        )
        .unwrap_err();
        assert!(
            e.contains("OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"),
            "{e}"
        );
    }
}
