//! The `quicksilver` binary: load the configuration, set up logging, bind, serve.

use std::path::PathBuf;

use anyhow::Context;
use quicksilver::config::{legacy, parse_duration, Config, KEYS};
use quicksilver::http::serve_redirect;
use quicksilver::hub::SETTLE_TIMEOUT;
use quicksilver::mint::{hub_key, HubKeyError};
use quicksilver::{serve, serve_metrics, shutdown_on_signal, telemetry, Hub, HUB_PATH};
use quicksilver_client::token::{self, Format, MintError, Selector, SigningKey, TokenRequest};

// The global allocator: the system's by default; `--features mimalloc` or `--features jemalloc`
// for the measurements of loadtest/RESULTS.md ("Allocators"). Both at once would be two
// `#[global_allocator]`s: say which one is wrong rather than let the linker complain.
#[cfg(all(feature = "mimalloc", feature = "jemalloc"))]
compile_error!("features `mimalloc` and `jemalloc` exclude each other: enable at most one");

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "Usage: quicksilver [--config PATH] [--check-config]
       quicksilver token [--publish SEL]... [--subscribe SEL]... [OPTIONS]

A Mercure hub. Settings come from defaults, then the optional TOML file, then environment
variables MERCURE_<KEY> (for example MERCURE_ADDR=127.0.0.1:9000 MERCURE_JWT_KEY=secret).
Log verbosity: RUST_LOG (default info). --check-config validates the settings as start-up
does, without listening or connecting, and exits (non-zero when they are invalid).

Tokens: `quicksilver token` mints one for development and scripts and prints it alone on
stdout (TOKEN=$(quicksilver token --publish '*')). It signs with the hub's own key, read from
--config PATH and the MERCURE_* variables as the hub reads them, or with --key or --key-file.
Mercure 1.0 access tokens (RFC 9068) by default, draft-07 claims with --legacy. Every option:
quicksilver token --help.

Settings:";

const TOKEN_USAGE: &str =
    "Usage: quicksilver token [--publish SEL]... [--subscribe SEL]... [OPTIONS]

Mints a token and prints it alone on stdout, for development and scripts:
  TOKEN=$(quicksilver token --publish '*' --subscribe 'urlpattern:https://example.com/books/:id')
Errors go to stderr, with a non-zero exit status (2 for a mistake in the options).

By default the token is a Mercure 1.0 access token (RFC 9068): header typ at+jwt, claims iss,
aud, exp, iat, a random jti, sub if given, and authorization_details holding one Mercure detail
per action. --legacy mints the draft-07 claim {\"mercure\":{\"publish\":[...],\"subscribe\":[...]}}
instead, which hubs before Mercure 1.0 read.

Rights (at least one selector; both options may be repeated):
  --publish SEL          topics the token may publish to
  --subscribe SEL        topics whose private updates the token may receive
                         SEL: a topic, * (every topic), or urlpattern:PATTERN for a URL Pattern
                         (urlpattern:https://example.com/books/:id; not with --legacy, whose
                         selectors may be URI templates: https://example.com/books/{id})
  --payload JSON         JSON shown to others in subscription events (needs --subscribe unless
                         --legacy)

Claims:
  --legacy               draft-07 claims instead of RFC 9068
  --expires-in DURATION  lifetime: 30m, 1h, 24h, 3600s, 1h30m (default 1h); 0 mints no exp,
                         which only --legacy allows (RFC 9068 tokens must expire)
  --issuer ISS           iss (default https://localhost; with --legacy, only when given)
  --audience AUD         aud (default https://localhost/.well-known/mercure, the hub's URL;
                         with --legacy, only when given)
  --subject SUB          sub: the user or client the token is for

Key (by default the hub's own HMAC secret, read from --config PATH and the MERCURE_* variables
as the hub reads them: the publisher key for a token that only publishes, else the subscriber
key; a hub whose keys are public keys needs --key-file with the private key):
  --key KEY              an HMAC secret or a PEM private key (other users may see it in `ps`:
                         prefer --key-file)
  --key-file PATH        a file holding the secret (a final newline is ignored) or the PEM
                         private key (PKCS#8, or PKCS#1 for RSA)
  --alg ALG              the key's algorithm: HS256 (default), HS384, HS512, RS256, RS384,
                         RS512, PS256, PS384, PS512, ES256, ES384, EdDSA
  --config PATH          the hub's configuration file, when no key is given
  --help                 this text";

fn main() -> anyhow::Result<()> {
    let mut config_path = None;
    let mut check_only = false;
    let mut args = std::env::args().skip(1).peekable();
    if args.next_if(|arg| arg == "token").is_some() {
        // A command of its own, with its own exit statuses; nothing of the hub is started.
        std::process::exit(token_main(args));
    }
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                config_path = Some(PathBuf::from(args.next().context("--config needs a path")?));
            }
            "--check-config" => check_only = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                for (key, help) in KEYS {
                    println!("  {key:<22} {help}");
                }
                return Ok(());
            }
            "--version" | "-V" => {
                println!("quicksilver {}", env!("CARGO_PKG_VERSION"));
                return Ok(());
            }
            other => anyhow::bail!("unknown argument `{other}`\n\n{USAGE} see --help"),
        }
    }

    let config = Config::load(config_path.as_deref()).context("invalid configuration")?;
    let legacy = legacy::advice(std::env::vars());
    if check_only {
        for line in &legacy {
            eprintln!("warning: {line}");
        }
        if config.dev_key.is_some() {
            eprintln!(
                "warning: no JWT key is set (jwt_key, or publisher_jwt_key and \
                 subscriber_jwt_key): each start would generate a development key"
            );
        }
        println!("configuration is valid");
        return Ok(());
    }
    // Kept until the end of `main`: dropping it flushes the spans still to export.
    let _telemetry = telemetry::init(config.log_format).context("cannot set up logging")?;
    for line in &legacy {
        tracing::warn!("{line}");
    }
    raise_open_files_limit();
    let listener = quicksilver::bind(config.addr)
        .with_context(|| format!("cannot listen on {} (setting `addr`)", config.addr))?;
    let addr = listener.local_addr()?;
    let metrics_listener = match config.metrics_addr {
        Some(metrics_addr) => {
            let listener = quicksilver::bind(metrics_addr).with_context(|| {
                format!("cannot listen on {metrics_addr} (setting `metrics_addr`)")
            })?;
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "metrics on their own listener: http://{addr}/metrics");
            Some(listener)
        }
        None => None,
    };
    let redirect_listener = match config.http_redirect_addr {
        Some(redirect_addr) => {
            let listener = quicksilver::bind(redirect_addr).with_context(|| {
                format!("cannot listen on {redirect_addr} (setting `http_redirect_addr`)")
            })?;
            Some(listener)
        }
        None => None,
    };
    let scheme = if config.https() { "https" } else { "http" };
    let url = format!("{scheme}://{addr}{HUB_PATH}");
    if let Some(secret) = &config.dev_key {
        print_development_banner(secret.expose(), &url)?;
    }

    actix_web::rt::System::new().block_on(async move {
        let hub = Hub::start(config).context("cannot start the hub")?;
        let metrics_server = match metrics_listener {
            Some(listener) => Some(serve_metrics(listener, hub.metrics().clone())?),
            None => None,
        };
        let metrics_handle = metrics_server.as_ref().map(|server| server.handle());
        if let Some(server) = metrics_server {
            actix_web::rt::spawn(server);
        }
        if let Some(listener) = redirect_listener {
            let redirect_addr = listener.local_addr()?;
            actix_web::rt::spawn(serve_redirect(listener, addr.port())?);
            tracing::info!(addr = %redirect_addr, "plain HTTP on http://{redirect_addr} redirected to HTTPS");
        }
        let transport_kind = hub.config().transport.clone();
        let server = serve(listener, hub.clone())?;
        tracing::info!(%addr, transport = ?transport_kind, "Quicksilver listening on {url}");
        let (failed, mut failure) = tokio::sync::oneshot::channel();
        actix_web::rt::spawn({
            // A transport that can never work (a NATS stream with settings the hub cannot
            // apply) stops the process with its reason, rather than leave it unready for ever.
            let (hub, server) = (hub.clone(), server.handle());
            async move {
                let _ = failed.send(hub.failed().await);
                server.stop(false).await;
            }
        });
        let settling = hub.clone();
        actix_web::rt::spawn(shutdown_on_signal(hub, server.handle()));
        server.await?;
        // The streams ended: their departures may still be queued (a cluster transport).
        settling.settle(SETTLE_TIMEOUT).await;
        if let Some(handle) = metrics_handle {
            handle.stop(true).await;
        }
        // Sent before the server was stopped: here by now if that is why it stopped.
        if let Ok(reason) = failure.try_recv() {
            anyhow::bail!("cannot start the hub: {reason}");
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// Each connection is an open file. Many systems (and container runtimes) start processes with
/// a soft limit of 1024, far below what the hard limit allows: raise it, so that a node is
/// limited by its resources rather than by a default.
fn raise_open_files_limit() {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft);
    match (before, rlimit::increase_nofile_limit(u64::MAX)) {
        (Ok(before), Ok(now)) if now > before => {
            tracing::info!(before, now, "open files limit raised (one per connection)");
        }
        (Ok(_), Ok(now)) if now < 10_000 => tracing::warn!(
            limit = now,
            "the open files limit allows about {now} connections; raise the hard limit \
             (ulimit -Hn, LimitNOFILE=, or the container runtime's default)"
        ),
        (_, Err(error)) => tracing::warn!(%error, "cannot raise the open files limit"),
        _ => {}
    }
}

/// No key was configured: show the generated key's tokens so a developer can start at once.
fn print_development_banner(secret: &str, url: &str) -> anyhow::Result<()> {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let publisher = serde_json::json!({ "mercure": { "publish": ["*"] } });
    let subscriber = serde_json::json!({ "mercure": { "subscribe": ["*"] } });
    let publisher = jsonwebtoken::encode(&header, &publisher, &key)?;
    let subscriber = jsonwebtoken::encode(&header, &subscriber, &key)?;
    eprintln!(
        "
No key configured: generated a development key for this run only.
Set MERCURE_JWT_KEY (or publisher_jwt_key / subscriber_jwt_key) for real use.

  publisher token:  {publisher}
  subscriber token: {subscriber}

Subscribe:
  curl -N -H 'Authorization: Bearer {subscriber}' '{url}?topic=https://example.com/books/1'
Publish:
  curl -H 'Authorization: Bearer {publisher}' -d topic=https://example.com/books/1 -d data=hello '{url}'
"
    );
    Ok(())
}

/// Why `quicksilver token` printed no token.
enum TokenFailure {
    /// A mistake in the options: exit status 2.
    Usage(String),
    /// The options are understood but no token can be minted: exit status 1.
    Refused(String),
}

impl From<MintError> for TokenFailure {
    fn from(error: MintError) -> Self {
        Self::Refused(error.to_string())
    }
}

impl From<HubKeyError> for TokenFailure {
    fn from(error: HubKeyError) -> Self {
        Self::Refused(error.to_string())
    }
}

/// `quicksilver token ARGS`: prints the token on stdout, or the reason on stderr; returns the
/// exit status.
fn token_main(args: impl Iterator<Item = String>) -> i32 {
    use std::io::Write;
    let (message, status) = match token_command(args) {
        Ok(None) => {
            // Ignored: a closed pipe (`quicksilver token --help | head`) is no error.
            let _ = writeln!(std::io::stdout(), "{TOKEN_USAGE}");
            return 0;
        }
        Ok(Some(token)) => {
            let mut stdout = std::io::stdout().lock();
            // Flushed before `exit`, which would not flush it.
            return match writeln!(stdout, "{token}").and_then(|()| stdout.flush()) {
                Ok(()) => 0,
                Err(error) => {
                    eprintln!("quicksilver token: cannot write the token: {error}");
                    1
                }
            };
        }
        Err(TokenFailure::Usage(message)) => {
            (format!("{message}\n(see quicksilver token --help)"), 2)
        }
        Err(TokenFailure::Refused(message)) => (message, 1),
    };
    eprintln!("quicksilver token: {message}");
    status
}

/// Reads the options and mints the token; `None` when `--help` was asked.
fn token_command(mut args: impl Iterator<Item = String>) -> Result<Option<String>, TokenFailure> {
    let usage = |message: String| TokenFailure::Usage(message);
    let mut format = Format::Rfc9068;
    let (mut publish, mut subscribe) = (Vec::new(), Vec::new());
    let (mut issuer, mut audience, mut subject, mut payload) = (None, None, None, None);
    let mut expires_in = Some(token::DEFAULT_EXPIRES_IN);
    let (mut key, mut key_file, mut alg, mut config_path) = (None, None, None, None);
    while let Some(arg) = args.next() {
        // `--flag=value` and `--flag value` alike.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.into())),
            _ => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| usage(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(None),
            "--legacy" => format = Format::Legacy,
            "--publish" => publish.push(value()?),
            "--subscribe" => subscribe.push(value()?),
            "--payload" => {
                let text = value()?;
                let json = serde_json::from_str(&text)
                    .map_err(|error| usage(format!("--payload is not valid JSON: {error}")))?;
                payload = Some(json);
            }
            "--issuer" => issuer = Some(value()?),
            "--audience" => audience = Some(value()?),
            "--subject" => subject = Some(value()?),
            "--expires-in" => {
                let text = value()?;
                expires_in = match parse_duration(&text) {
                    Some(duration) if duration.is_zero() => None,
                    Some(duration) => Some(duration),
                    None => {
                        return Err(usage(format!(
                            "--expires-in `{text}` is not a duration: give a number and a unit \
                             (30m, 1h, 24h, 3600s, 1h30m), or 0 for no exp (--legacy only)"
                        )))
                    }
                };
            }
            "--key" => key = Some(value()?.into_bytes()),
            "--key-file" => key_file = Some(PathBuf::from(value()?)),
            "--alg" => alg = Some(value()?),
            "--config" | "-c" => config_path = Some(PathBuf::from(value()?)),
            other => return Err(usage(format!("unknown option `{other}`"))),
        }
    }

    let mut request = TokenRequest::new(format).expires_in(expires_in);
    for text in publish {
        request = request.publish(Selector::parse(&text)?);
    }
    for text in subscribe {
        request = request.subscribe(Selector::parse(&text)?);
    }
    if !request.publishes() && !request.subscribes() {
        return Err(usage(MintError::NoSelector.to_string()));
    }
    if let Some(json) = payload {
        request = request.payload(json);
    }
    if let Some(issuer) = issuer {
        request = request.issuer(issuer);
    }
    if let Some(audience) = audience {
        request = request.audience(audience);
    }
    if let Some(subject) = subject {
        request = request.subject(subject);
    }

    let material = match (key, key_file) {
        (Some(_), Some(_)) => {
            return Err(usage("give either --key or --key-file, not both".into()))
        }
        (Some(key), None) => Some(key),
        (None, Some(path)) => {
            let mut bytes = std::fs::read(&path).map_err(|error| {
                TokenFailure::Refused(format!("cannot read --key-file {}: {error}", path.display()))
            })?;
            // `echo secret > file` adds a newline that is not part of the secret.
            if bytes.ends_with(b"\n") {
                bytes.pop();
                if bytes.ends_with(b"\r") {
                    bytes.pop();
                }
            }
            Some(bytes)
        }
        (None, None) => None,
    };
    let key = match material {
        Some(material) => SigningKey::new(
            alg.as_deref().unwrap_or(quicksilver::config::DEFAULT_JWT_ALG),
            &material,
        )?,
        None if alg.is_some() => {
            return Err(usage(
                "--alg names the algorithm of --key or --key-file; without them the hub's \
                 configured algorithm is used"
                    .into(),
            ))
        }
        None => match hub_key(config_path.as_deref(), std::env::vars(), &request) {
            Ok(key) => key,
            Err(error) => {
                // A half-done migration from the legacy hub (JWT_KEY without MERCURE_JWT_KEY)
                // is the likeliest reason for a missing key.
                if matches!(error, HubKeyError::NoConfiguredKey) {
                    for line in legacy::advice(std::env::vars()) {
                        eprintln!("warning: {line}");
                    }
                }
                return Err(error.into());
            }
        },
    };
    for warning in request.warnings() {
        eprintln!("warning: {warning}");
    }
    Ok(Some(token::mint(&request, &key)?))
}
