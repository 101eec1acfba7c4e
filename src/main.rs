//! The `quicksilver` binary: load the configuration, set up logging, bind, serve.

use std::path::PathBuf;

use anyhow::Context;
use quicksilver::config::{legacy, Config, KEYS};
use quicksilver::http::redirect::serve_redirect;
use quicksilver::{serve, serve_metrics, shutdown_on_signal, telemetry, Hub, HUB_PATH};

/// How long an exiting node waits for the announcements still queued (subscription departures
/// during a NATS outage); past it, the other nodes of the cluster make them.
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

const USAGE: &str = "Usage: quicksilver [--config PATH] [--check-config]

A Mercure hub. Settings come from defaults, then the optional TOML file, then environment
variables MERCURE_<KEY> (for example MERCURE_ADDR=127.0.0.1:9000 MERCURE_JWT_KEY=secret).
Log verbosity: RUST_LOG (default info). --check-config validates the settings as start-up
does, without listening or connecting, and exits (non-zero when they are invalid).

Settings:";

fn main() -> anyhow::Result<()> {
    let mut config_path = None;
    let mut check_only = false;
    let mut args = std::env::args().skip(1);
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
            Some(listener) => Some(serve_metrics(listener, hub.metrics.clone())?),
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
        let transport_kind = hub.config.transport.clone();
        let server = serve(listener, hub.clone())?;
        tracing::info!(%addr, transport = ?transport_kind, "Quicksilver listening on {url}");
        let (failed, mut failure) = tokio::sync::oneshot::channel();
        actix_web::rt::spawn({
            // A transport that can never work (a NATS stream with settings the hub cannot
            // apply) stops the process with its reason, rather than leave it unready for ever.
            let (transport, server) = (hub.transport.clone(), server.handle());
            async move {
                let _ = failed.send(transport.fatal().await);
                server.stop(false).await;
            }
        });
        let transport = hub.transport.clone();
        actix_web::rt::spawn(shutdown_on_signal(hub, server.handle()));
        server.await?;
        // The streams ended: their departures may still be queued (a cluster transport).
        transport.settle(SETTLE_TIMEOUT).await;
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
