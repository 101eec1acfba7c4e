//! Reads a few values from the hub's Prometheus metrics page (`GET /metrics`).
//!
//! Only the `soak` and `overload` scenarios use it, for what `/proc` cannot tell from outside:
//! the tokio tasks alive in the hub (`mercure_runtime_alive_tasks`, Quicksilver only) and the
//! subscribers it counts as connected. A hub that has no such page, or not these names, simply
//! yields no values: the figures that need them are then reported as missing.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;

use crate::http::{Endpoint, HttpError, KeepAlive};

/// Tokio tasks alive in the hub, summed over its runtimes.
pub const ALIVE_TASKS: &str = "mercure_runtime_alive_tasks";
/// Updates the hub keeps in its history.
pub const HISTORY_UPDATES: &str = "mercure_history_updates";
/// Subscribers the hub counts as connected.
pub const SUBSCRIBERS_CONNECTED: &str = "mercure_subscribers_connected";

/// The metrics URL of a hub URL: the same scheme, host and port, path `/metrics`.
pub fn default_url(hub_url: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(hub_url)
        .map_err(|error| anyhow::anyhow!("invalid hub URL {hub_url:?}: {error}"))?;
    url.set_path("/metrics");
    url.set_query(None);
    Ok(url.to_string())
}

/// A keep-alive client for one metrics page.
#[derive(Debug)]
pub struct Scraper {
    endpoint: Endpoint,
    client: KeepAlive,
    request: Vec<u8>,
}

impl Scraper {
    /// A scraper of `url`, each request bounded by `timeout`. Each scrape opens a connection and
    /// asks the hub to close it after answering: a connection kept between scrapes would be
    /// closed by the hub's keep-alive timeout at unpredictable times, and would show in (or
    /// vanish from) the hub's count of open files that the soak compares.
    pub async fn new(
        url: &str,
        timeout: Duration,
        tls: Option<&Arc<ClientConfig>>,
    ) -> anyhow::Result<Self> {
        // One source address: this is a single connection.
        let endpoint = Endpoint::resolve(url, 0, tls).await?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
            endpoint.target.path_and_query, endpoint.target.host_header
        )
        .into_bytes();
        Ok(Scraper { endpoint, client: KeepAlive::new(timeout), request })
    }

    /// Fetches the page and returns the values of `names`, in their order (`None` for a name the
    /// page lacks).
    pub async fn scrape(&mut self, names: &[&str]) -> Result<Vec<Option<f64>>, HttpError> {
        let response = self.client.send(&self.endpoint.connector, &self.request).await?;
        if response.status != 200 {
            return Err(HttpError::Status(response.status));
        }
        let text = String::from_utf8_lossy(&response.body);
        Ok(names.iter().map(|name| value(&text, name)).collect())
    }
}

/// The value of sample `name` in a Prometheus or OpenMetrics text page; `name` includes the
/// labels, if any, exactly as the page writes them (`family{label="value"}`).
pub fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_unlabelled_samples_only() {
        let page = "# HELP mercure_runtime_alive_tasks Number of tokio tasks alive\n\
                    # TYPE mercure_runtime_alive_tasks gauge\n\
                    mercure_runtime_alive_tasks 17\n\
                    mercure_subscribers_connected_total 9\n\
                    mercure_subscribers_connected 3 1700000000\n\
                    mercure_http_responses_total{status=\"200\"} 5\n# EOF\n";
        assert_eq!(value(page, ALIVE_TASKS), Some(17.0));
        // A longer name sharing the prefix is another sample; a timestamp may follow the value.
        assert_eq!(value(page, SUBSCRIBERS_CONNECTED), Some(3.0));
        assert_eq!(value(page, "mercure_http_responses_total"), None);
        assert_eq!(value(page, "mercure_http_responses_total{status=\"200\"}"), Some(5.0));
        assert_eq!(value(page, "absent"), None);
    }

    #[test]
    fn the_metrics_url_is_beside_the_hub() {
        assert_eq!(
            default_url("http://127.0.0.1:8090/.well-known/mercure?x=1").expect("valid"),
            "http://127.0.0.1:8090/metrics"
        );
        assert_eq!(
            default_url("https://hub.example:8443/.well-known/mercure").expect("valid"),
            "https://hub.example:8443/metrics"
        );
        assert!(default_url("not a url").is_err());
    }
}
