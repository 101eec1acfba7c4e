//! Logs, tracing and OpenTelemetry export.
//!
//! [`init`] installs the process-wide `tracing` subscriber once, from `main`, before any runtime
//! starts: an `RUST_LOG` filter, human or JSON lines on stderr, and, when the standard
//! `OTEL_EXPORTER_OTLP_*` variables ask for it, a layer that turns `tracing` spans into
//! OpenTelemetry spans and exports them over OTLP/HTTP (protobuf). [`TelemetryGuard`] flushes the
//! last spans when `main` drops it.
//!
//! Export runs off the request path: the SDK's batch span processor owns a dedicated OS thread and
//! the exporter uses reqwest's blocking client, which runs its own private runtime on yet another
//! thread. Neither needs, nor touches, the actix-web (tokio current-thread) runtimes of the
//! workers, so the order in which `main` starts things does not matter.
//!
//! The hub's spans are `mercure.publish`, `mercure.subscribe` and `mercure.dispatch`, with fields
//! under `mercure.*`. Tokens must never reach a log line: request URLs go through
//! `redact_query` first.

use std::borrow::Cow;
use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_subscriber::filter::{filter_fn, LevelFilter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use crate::form;

/// Service name reported to the collector when `OTEL_SERVICE_NAME` does not say otherwise.
const DEFAULT_SERVICE_NAME: &str = "quicksilver";

/// What replaces the value of an `authorization` query parameter in logs.
const REDACTED: &str = "REDACTED";

/// Path appended to `OTEL_EXPORTER_OTLP_ENDPOINT` for traces, as the OTLP/HTTP spec says.
const TRACES_PATH: &str = "/v1/traces";

/// Log output format (`log_format` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum LogFormat {
    /// Human-readable lines, coloured when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = ParseLogFormatError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.eq_ignore_ascii_case("text") {
            Ok(LogFormat::Text)
        } else if value.eq_ignore_ascii_case("json") {
            Ok(LogFormat::Json)
        } else {
            Err(ParseLogFormatError { value: value.to_owned() })
        }
    }
}

impl TryFrom<String> for LogFormat {
    type Error = ParseLogFormatError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// A `log_format` value that is neither `text` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid log format {value:?}: expected \"text\" or \"json\"")]
pub struct ParseLogFormatError {
    value: String,
}

/// Keeps exporters alive; flushes and shuts down OpenTelemetry export on drop.
///
/// Dropping it blocks for up to 5 seconds while the last spans are sent, so drop it at the very
/// end of `main`, after the HTTP server has stopped.
#[derive(Debug)]
#[must_use = "dropping the guard stops OpenTelemetry export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Shutdown exports what is still queued, then stops the batch thread.
            if let Err(error) = provider.shutdown() {
                tracing::warn!(%error, "OpenTelemetry shutdown failed; recent spans may be lost");
            }
        }
    }
}

/// Installs the global tracing subscriber: RUST_LOG filter (default "info"), human text or JSON
/// lines on stderr, and, when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` variable is set (or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), an OpenTelemetry layer exporting spans over OTLP.
///
/// Honours `OTEL_EXPORTER_OTLP_PROTOCOL` / `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` (only
/// `http/protobuf`, the default, is built in: `grpc` and `http/json` are refused with an error),
/// `OTEL_SERVICE_NAME` (default "quicksilver", unless `OTEL_RESOURCE_ATTRIBUTES` sets
/// `service.name`) and `OTEL_SDK_DISABLED=true`. The exporter itself reads
/// `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT` and their `TRACES_` forms, and the
/// SDK reads `OTEL_TRACES_SAMPLER`. The endpoint must be plain `http://`: no TLS stack is compiled
/// in, so point it at a local collector.
///
/// Fails if `RUST_LOG` does not parse, if the OpenTelemetry settings are invalid, or if a global
/// subscriber is already installed.
pub fn init(format: LogFormat) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
        .context("invalid RUST_LOG")?;
    let otlp = OtlpSettings::from_env(|name| std::env::var(name).ok())?;
    let provider = otlp.as_ref().map(tracer_provider).transpose()?;

    let ansi = std::io::stderr().is_terminal();
    let logs = match format {
        LogFormat::Text => {
            tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).boxed()
        }
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed()
        }
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(provider.as_ref().map(otel_layer))
        .try_init()
        .context("a global tracing subscriber is already installed")?;

    if let (Some(provider), Some(otlp)) = (&provider, &otlp) {
        // For code that uses the OpenTelemetry API directly, and to read and write `traceparent`.
        opentelemetry::global::set_tracer_provider(provider.clone());
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        tracing::info!(
            endpoint = %otlp.endpoint,
            service = otlp.service_name.as_deref().unwrap_or("(from OTEL_RESOURCE_ATTRIBUTES)"),
            "exporting traces over OTLP/HTTP"
        );
    }
    Ok(TelemetryGuard { provider })
}

/// Where and as whom to export spans, read from the `OTEL_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OtlpSettings {
    /// Full URL of the traces endpoint, `…/v1/traces` included.
    endpoint: String,
    /// `service.name`; `None` leaves it to `OTEL_RESOURCE_ATTRIBUTES`.
    service_name: Option<String>,
}

impl OtlpSettings {
    /// Reads the settings through `var` (the process environment, or a map in tests). `None` when
    /// no endpoint is set or the SDK is disabled; an error for settings we cannot honour.
    fn from_env(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Self>> {
        // Empty means unset, as in the OpenTelemetry SDKs.
        let var = |name: &str| var(name).filter(|value| !value.trim().is_empty());

        if var("OTEL_SDK_DISABLED").is_some_and(|value| value.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        // The signal-specific URL is used as is; the generic one is a base for `/v1/traces`.
        let (variable, endpoint) =
            match (var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), var("OTEL_EXPORTER_OTLP_ENDPOINT")) {
                (Some(url), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url.trim().to_owned()),
                (None, Some(base)) => {
                    let base = base.trim().trim_end_matches('/');
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("{base}{TRACES_PATH}"))
                }
                (None, None) => return Ok(None),
            };

        let (protocol_variable, protocol) = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
            Some(protocol) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", protocol),
            None => (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                var("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or_else(|| "http/protobuf".to_owned()),
            ),
        };
        match protocol.trim() {
            "http/protobuf" => {}
            "grpc" => anyhow::bail!(
                "{protocol_variable}=grpc is not supported: quicksilver exports OTLP over HTTP \
                 only; set it to http/protobuf and point the endpoint at the collector's HTTP \
                 port (usually 4318)"
            ),
            other => anyhow::bail!(
                "{protocol_variable}={other:?} is not supported: the only supported value is \
                 http/protobuf"
            ),
        }

        let scheme = endpoint.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some(scheme) if scheme.eq_ignore_ascii_case("http") => {}
            Some(scheme) if scheme.eq_ignore_ascii_case("https") => anyhow::bail!(
                "{variable}={endpoint:?}: https is not supported (no TLS stack is built in); \
                 export to a local collector over http://"
            ),
            _ => anyhow::bail!("{variable}={endpoint:?} is not an http:// URL"),
        }

        let service_name = match var("OTEL_SERVICE_NAME") {
            Some(name) => Some(name.trim().to_owned()),
            // The SDK's resource detector reads `service.name` from there.
            None if var("OTEL_RESOURCE_ATTRIBUTES")
                .is_some_and(|attributes| attributes.contains("service.name=")) =>
            {
                None
            }
            None => Some(DEFAULT_SERVICE_NAME.to_owned()),
        };
        Ok(Some(Self { endpoint, service_name }))
    }
}

/// Builds a tracer provider that batches spans on its own thread and sends them to
/// `settings.endpoint` as OTLP/HTTP protobuf.
fn tracer_provider(settings: &OtlpSettings) -> anyhow::Result<SdkTracerProvider> {
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(settings.endpoint.clone())
        .build()
        .context("cannot build the OTLP span exporter")?;
    let mut resource = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if let Some(name) = &settings.service_name {
        resource = resource.with_service_name(name.clone());
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// The layer that turns `tracing` spans into OpenTelemetry spans of `provider`.
fn otel_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync
where
    S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    let scope = InstrumentationScope::builder("quicksilver")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer_with_scope(scope))
        // Spans of the exporter's own HTTP stack would be exported by that stack, and so on.
        .with_filter(filter_fn(|metadata| !is_export_machinery(metadata.target())))
}

/// Whether `target` belongs to a crate that the OTLP exporter itself runs.
fn is_export_machinery(target: &str) -> bool {
    const CRATES: [&str; 6] = ["opentelemetry", "reqwest", "hyper", "h2", "tower", "want"];
    // Targets are module paths (`hyper_util::client`) or names chosen by the crate
    // (`opentelemetry-otlp`), so match the crate and any `_`/`-` suffixed sibling.
    let krate = target.split("::").next().unwrap_or(target);
    CRATES.iter().any(|name| match krate.strip_prefix(name) {
        Some(rest) => rest.is_empty() || rest.starts_with(['_', '-']),
        None => false,
    })
}

/// The query string with the value of every `authorization` parameter (any case) replaced by
/// `REDACTED`, for logging request URLs without leaking tokens. Must not panic on any input
/// (invalid percent-encoding, no `=`, empty, repeated keys).
///
/// Keys are compared after form-decoding, the way the hub's query parser reads them, so
/// `%61uthorization` and `AUTHORIZ%41TION` are redacted too (`authorization+`, which decodes with a
/// trailing space, is not: the hub would not read a token from it either). Pairs are split on `&`
/// only, and the value runs to the end of the pair, `=` included. A key without `=`, or with an
/// empty value, carries no token and is kept. Everything else is returned byte for byte, borrowed
/// when nothing was redacted.
pub(crate) fn redact_query(query: &str) -> Cow<'_, str> {
    let needs_redaction = query.split('&').any(|pair| match pair.split_once('=') {
        Some((key, value)) => !value.is_empty() && is_authorization_key(key),
        None => false,
    });
    if !needs_redaction {
        return Cow::Borrowed(query);
    }

    let mut out = String::with_capacity(query.len());
    for (index, pair) in query.split('&').enumerate() {
        if index > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((key, value)) if !value.is_empty() && is_authorization_key(key) => {
                out.push_str(key);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
    }
    Cow::Owned(out)
}

/// Whether a raw (still encoded) query key decodes to `authorization`, ignoring ASCII case.
///
/// The key is decoded by the hub's own form decoder. A key it refuses (a `%` not followed by two
/// hex digits, or bytes that are not UTF-8) is not `authorization` under any lenient reading
/// either: keeping a bad `%` literal leaves a `%` in the name, and invalid UTF-8 needs a non-ASCII
/// byte, so the name cannot match.
fn is_authorization_key(raw: &str) -> bool {
    const NAME: &str = "authorization";
    // An encoded byte takes at most 3 characters, so longer keys cannot match.
    if raw.len() < NAME.len() || raw.len() > NAME.len() * 3 {
        return false;
    }
    form::decode_component(raw).is_ok_and(|key| key.eq_ignore_ascii_case(NAME))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    // ---- redact_query ----

    #[test]
    fn redacts_the_authorization_parameter() {
        assert_eq!(redact_query("authorization=abc&topic=x"), "authorization=REDACTED&topic=x");
        assert_eq!(
            redact_query("topic=x&authorization=eyJhbGciOi.eyJtZXJj.sig"),
            "topic=x&authorization=REDACTED"
        );
    }

    #[test]
    fn redacts_any_case() {
        assert_eq!(redact_query("Authorization=abc&topic=x"), "Authorization=REDACTED&topic=x");
        assert_eq!(redact_query("AUTHORIZATION=abc"), "AUTHORIZATION=REDACTED");
    }

    #[test]
    fn redacts_every_repetition() {
        assert_eq!(
            redact_query("authorization=a&topic=x&authorization=b&Authorization=c"),
            "authorization=REDACTED&topic=x&authorization=REDACTED&Authorization=REDACTED"
        );
    }

    #[test]
    fn redacts_percent_encoded_keys() {
        assert_eq!(redact_query("%61uthorization=abc&topic=x"), "%61uthorization=REDACTED&topic=x");
        assert_eq!(
            redact_query("%41%55%54%48%4f%52%49%5a%41%54%49%4f%4e=abc"),
            "%41%55%54%48%4f%52%49%5a%41%54%49%4f%4e=REDACTED"
        );
    }

    #[test]
    fn keeps_the_whole_value_after_the_first_equals_out() {
        assert_eq!(redact_query("authorization=a=b=c&x=1"), "authorization=REDACTED&x=1");
        // An encoded `&` is part of the value, not a separator.
        assert_eq!(redact_query("authorization=a%26topic%3Dx"), "authorization=REDACTED");
    }

    #[test]
    fn leaves_queries_without_a_token_untouched() {
        for query in [
            "",
            "topic=x",
            "topic=https%3A%2F%2Fexample.com%2Fbooks%2F1&lastEventID=abc",
            "authorization",
            "authorization=",
            "authorization&topic=x",
            "authorizations=abc",
            "xauthorization=abc",
            "authorization+=abc",
            "&&&",
            "=",
            "==abc",
            "topic=authorization%3Dabc",
        ] {
            let redacted = redact_query(query);
            assert!(matches!(redacted, Cow::Borrowed(_)), "{query:?} was copied");
            assert_eq!(redacted, query);
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        for query in [
            "%",
            "%%",
            "%zz=1",
            "%6",
            "%6=abc",
            "authorization%=abc",
            "authorizatio%6E=abc",
            "authorizatio%6=abc",
            "%E2%82%AC=€&authorization=x",
            "\u{0}=\u{0}&authorization=\u{ffff}",
            "é=é&authorizatioñ=x",
            "authorization=abc&",
            "&authorization=abc",
            "a=1&&authorization=abc&&",
        ] {
            let redacted = redact_query(query);
            assert_eq!(redacted.matches('&').count(), query.matches('&').count());
        }
        assert_eq!(redact_query("authorizatio%6E=abc"), "authorizatio%6E=REDACTED");
        assert_eq!(redact_query("authorizatio%6=abc"), "authorizatio%6=abc");
        assert_eq!(redact_query("&authorization=abc&"), "&authorization=REDACTED&");
    }

    #[test]
    fn keeps_keys_that_do_not_decode() {
        // Refused by the form decoder; read leniently, none would be `authorization` either.
        for query in [
            "authorizatio%6E%=abc",
            "authorization%zz=abc",
            "authorizatio%FF=abc",
            "%C3uthorization=abc",
        ] {
            assert_eq!(redact_query(query), query);
        }
    }

    // ---- LogFormat ----

    #[test]
    fn parses_log_formats() {
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("JSON".parse(), Ok(LogFormat::Json));
        assert_eq!(LogFormat::default(), LogFormat::Text);
        for format in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(format.to_string().parse(), Ok(format));
        }
    }

    #[test]
    fn rejects_unknown_log_formats_listing_the_valid_ones() {
        for value in ["", "xml", " json", "logfmt"] {
            let error = value.parse::<LogFormat>().expect_err("only text and json are valid");
            let message = error.to_string();
            assert!(message.contains("\"text\""), "{message}");
            assert!(message.contains("\"json\""), "{message}");
        }
    }

    #[test]
    fn deserializes_log_format_through_from_str() {
        let format: LogFormat = serde_json::from_str("\"json\"").expect("json is valid");
        assert_eq!(format, LogFormat::Json);
        let error = serde_json::from_str::<LogFormat>("\"yaml\"").expect_err("yaml is invalid");
        assert!(error.to_string().contains("expected \"text\" or \"json\""));
    }

    // ---- OTLP settings ----

    fn settings(vars: &[(&str, &str)]) -> anyhow::Result<Option<OtlpSettings>> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        OtlpSettings::from_env(|name| vars.get(name).cloned())
    }

    fn endpoint(vars: &[(&str, &str)]) -> String {
        settings(vars).expect("valid settings").expect("export enabled").endpoint
    }

    #[test]
    fn no_endpoint_means_no_export() {
        assert_eq!(settings(&[]).expect("valid"), None);
        assert_eq!(settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]).expect("valid"), None);
        assert_eq!(settings(&[("OTEL_SERVICE_NAME", "hub")]).expect("valid"), None);
    }

    #[test]
    fn sdk_disabled_wins() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ];
        assert_eq!(settings(&vars).expect("valid"), None);
    }

    #[test]
    fn generic_endpoint_gets_the_traces_path() {
        let base = "OTEL_EXPORTER_OTLP_ENDPOINT";
        assert_eq!(endpoint(&[(base, "http://collector:4318")]), "http://collector:4318/v1/traces");
        assert_eq!(
            endpoint(&[(base, "http://collector:4318/")]),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(endpoint(&[(base, "http://gateway/otlp")]), "http://gateway/otlp/v1/traces");
    }

    #[test]
    fn traces_endpoint_is_used_as_is_and_wins() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://wrong:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/custom"),
        ];
        assert_eq!(endpoint(&vars), "http://collector:4318/custom");
    }

    #[test]
    fn refuses_protocols_other_than_http_protobuf() {
        let url = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert!(settings(&[url, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).is_ok());
        let grpc = settings(&[url, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])
            .expect_err("grpc is not built in")
            .to_string();
        assert!(grpc.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc"), "{grpc}");
        assert!(grpc.contains("http/protobuf"), "{grpc}");
        let json = settings(&[url, ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")])
            .expect_err("http/json is not built in")
            .to_string();
        assert!(json.contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), "{json}");
        // The traces-specific protocol overrides the generic one.
        let vars = [
            url,
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ];
        assert!(settings(&vars).is_ok());
    }

    #[test]
    fn refuses_endpoints_that_are_not_plain_http() {
        for url in ["https://collector:4318", "collector:4318", "grpc://collector"] {
            let error = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", url)])
                .expect_err("only http:// works")
                .to_string();
            assert!(error.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{error}");
        }
        assert!(settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "HTTP://collector")]).is_ok());
    }

    #[test]
    fn service_name_defaults_to_quicksilver() {
        let url = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        let name =
            |vars: &[(&str, &str)]| settings(vars).expect("valid").expect("enabled").service_name;
        assert_eq!(name(&[url]), Some("quicksilver".to_owned()));
        assert_eq!(name(&[url, ("OTEL_SERVICE_NAME", "hub-eu")]), Some("hub-eu".to_owned()));
        assert_eq!(
            name(&[url, ("OTEL_RESOURCE_ATTRIBUTES", "service.name=hub-us,env=prod")]),
            None
        );
        assert_eq!(
            name(&[url, ("OTEL_RESOURCE_ATTRIBUTES", "env=prod")]),
            Some("quicksilver".to_owned())
        );
    }

    #[test]
    fn recognises_export_machinery_targets() {
        for target in [
            "opentelemetry_sdk",
            "opentelemetry_otlp::exporter",
            "opentelemetry-otlp",
            "opentelemetry",
            "reqwest::blocking",
            "hyper_util::client",
            "h2::codec",
        ] {
            assert!(is_export_machinery(target), "{target}");
        }
        for target in
            ["quicksilver::publish", "quicksilver", "actix_web::middleware", "towel", "hyperion::x"]
        {
            assert!(!is_export_machinery(target), "{target}");
        }
    }

    // ---- export end to end ----

    /// One HTTP request as a fake collector received it.
    struct Received {
        request_line: String,
        body: Vec<u8>,
    }

    /// Serves OTLP/HTTP requests on 127.0.0.1:0 from a thread, answering 200 to each and passing
    /// them on. The thread ends when the receiver is dropped or after its deadline.
    struct FakeCollector {
        port: u16,
        requests: mpsc::Receiver<Received>,
    }

    impl FakeCollector {
        const DEADLINE: Duration = Duration::from_secs(20);

        fn start() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
            let port = listener.local_addr().expect("bound address").port();
            // Non-blocking accept, so the thread can notice its deadline and stop by itself.
            listener.set_nonblocking(true).expect("non-blocking listener");
            let (sender, requests) = mpsc::channel();
            thread::spawn(move || {
                let deadline = Instant::now() + Self::DEADLINE;
                while Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let Some(received) = Self::serve(stream) else {
                                continue;
                            };
                            if sender.send(received).is_err() {
                                return;
                            }
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
            Self { port, requests }
        }

        /// Reads one request (Content-Length framing, which reqwest uses for a known body) and
        /// answers 200 with an empty protobuf message.
        fn serve(mut stream: TcpStream) -> Option<Received> {
            stream.set_nonblocking(false).ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            let mut data = Vec::new();
            let mut chunk = [0_u8; 8192];
            let header_end = loop {
                if let Some(at) = data.windows(4).position(|window| window == b"\r\n\r\n") {
                    break at + 4;
                }
                let read = stream.read(&mut chunk).ok()?;
                if read == 0 {
                    return None;
                }
                data.extend_from_slice(&chunk[..read]);
            };
            let head = String::from_utf8_lossy(&data[..header_end]).into_owned();
            let length = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            while data.len() < header_end + length {
                let read = stream.read(&mut chunk).ok()?;
                if read == 0 {
                    break;
                }
                data.extend_from_slice(&chunk[..read]);
            }
            let response = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\n\
                            content-length: 0\r\nconnection: close\r\n\r\n";
            stream.write_all(response.as_bytes()).ok()?;
            Some(Received {
                request_line: head.lines().next().unwrap_or_default().to_owned(),
                body: data[header_end..].to_vec(),
            })
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|window| window == needle)
    }

    #[test]
    fn spans_reach_an_otlp_http_endpoint() {
        let collector = FakeCollector::start();
        let settings = OtlpSettings {
            endpoint: format!("http://127.0.0.1:{}/v1/traces", collector.port),
            service_name: Some("quicksilver-test".to_owned()),
        };
        let provider = tracer_provider(&settings).expect("provider builds");
        let subscriber = tracing_subscriber::registry().with(otel_layer(&provider));

        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "mercure.publish",
                mercure.topic = "https://example.com/books/1",
                mercure.update.id = "urn:uuid:0190a8d6",
            );
            let _entered = span.enter();
            tracing::info!("published");
        });
        // Bounded: the batch processor waits at most 5 s for the export to finish.
        provider.force_flush().expect("spans flushed to the collector");

        let received = collector
            .requests
            .recv_timeout(Duration::from_secs(10))
            .expect("the collector received an export request");
        assert_eq!(received.request_line, "POST /v1/traces HTTP/1.1");
        for needle in [
            &b"mercure.publish"[..],
            b"mercure.topic",
            b"https://example.com/books/1",
            b"mercure.update.id",
            b"quicksilver-test",
        ] {
            assert!(
                contains(&received.body, needle),
                "{:?} missing from the exported body",
                String::from_utf8_lossy(needle)
            );
        }
        provider.shutdown().expect("clean shutdown");
    }
}
