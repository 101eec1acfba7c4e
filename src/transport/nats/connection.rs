//! The node's connection to JetStream, and the messages it writes: publishing an update
//! (acknowledged, and retried with the same message id through a stream leader election),
//! refusing at once when the server is out of reach (a probe every second tells), and the
//! message format described in the parent module.

use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::config::NatsSettings;
use crate::metrics::NatsMetrics;
use crate::transport::TransportError;
use crate::update::{Dispatched, Seq, Update};

/// The message format this node writes and reads.
pub(super) const FORMAT: &str = "1";
/// Header naming the message format.
pub(super) const FORMAT_HEADER: &str = "Quicksilver-Format";
/// How long to wait before trying NATS again after a failure.
pub(super) const RETRY: Duration = Duration::from_secs(1);
/// What a client is told to wait when NATS is out of reach.
pub(super) const RETRY_AFTER: Duration = Duration::from_secs(2);
/// How long a request that sets up a stream or a bucket may take. JetStream (2.14) answers
/// neither of two clients creating the same stream at once; asked again, both get their
/// answer, so this is short and the request is repeated.
pub(super) const SETUP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long subscription events stay in the stream: they describe connections, and a single
/// node keeps only its last 10,000 in memory; this bounds what clients opening and closing
/// subscriptions add to the stream.
pub(super) const PRESENCE_TTL: Duration = Duration::from_secs(3600);
/// How often the bridge checks that its server answers, and how long it waits for the answer.
pub(super) const PROBE_INTERVAL: Duration = Duration::from_secs(1);
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// A subject nobody subscribes to: the server itself answers "no responders".
pub(super) const PROBE_SUBJECT: &str = "_QUICKSILVER.probe";
/// What the bridge, the presence tasks and the transport's handles share of NATS.
#[derive(Debug)]
pub(super) struct Connection {
    pub(super) settings: NatsSettings,
    /// Set once the bridge has connected and the stream exists.
    pub(super) jetstream: OnceLock<async_nats::jetstream::Context>,
    /// Whether the server answered the last probe: a server that stopped answering keeps its
    /// connection open for a while (until pings go unanswered), and what is sent to it then
    /// may be stored whenever it wakes up.
    answering: AtomicBool,
    pub(super) metrics: NatsMetrics,
}

impl Connection {
    pub(super) fn new(settings: NatsSettings, metrics: NatsMetrics) -> Self {
        Self { settings, jetstream: OnceLock::new(), answering: AtomicBool::new(true), metrics }
    }

    /// The JetStream context while connected; refused at once otherwise.
    pub(super) fn jetstream(&self) -> Result<&async_nats::jetstream::Context, TransportError> {
        let jetstream = self.jetstream.get().ok_or_else(|| unavailable("not connected"))?;
        match jetstream.client().connection_state() {
            // A server that does not answer may store later what it is sent now, after its
            // publisher was told it failed: refuse at once instead.
            async_nats::connection::State::Connected if self.answering.load(Ordering::Acquire) => {
                Ok(jetstream)
            }
            async_nats::connection::State::Connected => {
                Err(unavailable("the server does not answer"))
            }
            // A publication made now would wait inside the client and might be stored after
            // its publisher was told it failed: refuse it at once instead.
            _ => Err(unavailable("the connection is down")),
        }
    }

    /// Asks the server a question only it answers (a request nobody subscribes to: "no
    /// responders"), every [`PROBE_INTERVAL`], and keeps [`Self::answering`] up to date.
    pub(super) async fn probe(&self, client: async_nats::Client) {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let asked = client.request(PROBE_SUBJECT, Bytes::new());
            let answered = match tokio::time::timeout(PROBE_TIMEOUT, asked).await {
                Ok(Ok(_)) => true,
                Ok(Err(error)) => error.kind() == async_nats::RequestErrorKind::NoResponders,
                Err(_) => false,
            };
            if self.answering.swap(answered, Ordering::AcqRel) != answered {
                tracing::warn!(answered, "the NATS server's answers to probes changed");
            }
        }
    }

    /// Publishes one update and waits for its acknowledgement, trying again with the same
    /// message id (so it is stored once) while the stream has no leader, up to the timeout.
    pub(super) async fn publish_one(
        &self,
        update: &Update,
        ttl: Option<Duration>,
    ) -> Result<Seq, TransportError> {
        let (subject, message, size) = self.message(update, ttl)?;
        let too_large = |limit: usize| TransportError::TooLarge { size, limit };
        let limit = self.jetstream()?.client().server_info().max_payload;
        if size > limit {
            return Err(too_large(limit));
        }
        let sent = tokio::time::Instant::now();
        let deadline = sent + self.settings.publish_timeout;
        loop {
            let attempt = async {
                let ack = self.jetstream()?.send_publish(subject.clone(), message.clone()).await;
                let ack = ack.map_err(PublishFailure::new)?;
                ack.await.map_err(PublishFailure::new)
            };
            let failure = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(ack)) => {
                    self.metrics.acknowledged(sent.elapsed());
                    return Ok(ack.sequence);
                }
                Ok(Err(PublishFailure::TooLarge)) => return Err(too_large(limit)),
                Ok(Err(PublishFailure::Refused(error))) => return Err(error),
                Ok(Err(PublishFailure::Transient(reason))) => reason,
                Err(_) => "no acknowledgement in time".to_owned(),
            };
            if tokio::time::Instant::now() + RETRY / 4 >= deadline {
                return Err(unavailable(&format!(
                    "JetStream did not acknowledge the update within {:?} \
                     (nats_publish_timeout): {failure}",
                    self.settings.publish_timeout
                )));
            }
            tokio::time::sleep(RETRY / 4).await;
        }
    }

    /// Publishes `updates` in this order, every one sent before any acknowledgement is awaited;
    /// a failure fails the whole batch, which can be published again (each is stored once:
    /// same message ids). For subscription events, which come in bursts.
    pub(super) async fn publish_batch(
        &self,
        updates: &[&Update],
        ttl: Option<Duration>,
    ) -> Result<(), TransportError> {
        let jetstream = self.jetstream()?;
        let sent = tokio::time::Instant::now();
        let mut acks = Vec::with_capacity(updates.len());
        for update in updates {
            let (subject, message, _) = self.message(update, ttl)?;
            let ack = jetstream.send_publish(subject, message).await;
            acks.push(ack.map_err(|e| unavailable(&e.to_string()))?);
        }
        let acknowledged =
            futures_util::future::try_join_all(acks.into_iter().map(|a| a.into_future()));
        match tokio::time::timeout(self.settings.publish_timeout, acknowledged).await {
            Ok(Ok(_)) => {
                self.metrics.acknowledged(sent.elapsed());
                Ok(())
            }
            Ok(Err(error)) => Err(unavailable(&error.to_string())),
            Err(_) => Err(unavailable("no acknowledgement in time (nats_publish_timeout)")),
        }
    }

    /// The subject and message of `update`, in the message format, and the payload's size.
    fn message(
        &self,
        update: &Update,
        ttl: Option<Duration>,
    ) -> Result<(String, PublishMessage, usize), TransportError> {
        let payload = serde_json::to_vec(update)
            .map_err(|e| TransportError::Store(format!("cannot encode an update: {e}")))?;
        let size = payload.len();
        let message_id = message_id(update, &payload);
        let mut message = PublishMessage::build()
            .payload(Bytes::from(payload))
            .message_id(message_id)
            .header(FORMAT_HEADER, FORMAT);
        if let Some(ttl) = ttl {
            message = message.ttl(ttl);
        }
        Ok((subject(&self.settings.stream, update.id.as_str()), message, size))
    }
}

/// Why one publication attempt failed.
enum PublishFailure {
    /// Worth trying again with the same message id (no leader yet, connection hiccup).
    Transient(String),
    /// The message with its headers is over the server's `max_payload`.
    TooLarge,
    /// Final: trying again cannot help.
    Refused(TransportError),
}

impl From<TransportError> for PublishFailure {
    fn from(error: TransportError) -> Self {
        Self::Refused(error)
    }
}

impl PublishFailure {
    fn new(error: async_nats::jetstream::context::PublishError) -> Self {
        match error.kind() {
            PublishErrorKind::MaxPayloadExceeded => Self::TooLarge,
            PublishErrorKind::StreamNotFound
            | PublishErrorKind::TimedOut
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::MaxAckPending => Self::Transient(error.to_string()),
            _ => Self::Refused(unavailable(&error.to_string())),
        }
    }
}

/// The subject of the updates whose id is `id`.
pub(super) fn subject(stream: &str, id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    let key: String = digest.iter().take(8).map(|byte| format!("{byte:02x}")).collect();
    format!("{stream}.u.{key}")
}

/// `Nats-Msg-Id` of an update: its id and a digest of its encoding.
pub(super) fn message_id(update: &Update, payload: &[u8]) -> String {
    let digest = Sha256::digest(payload);
    let short: String = digest.iter().take(12).map(|byte| format!("{byte:02x}")).collect();
    format!("{}:{short}", update.id.as_str())
}

/// Decodes the message numbered `seq`.
pub(super) fn decode(
    seq: Seq,
    headers: &async_nats::HeaderMap,
    payload: &[u8],
) -> Result<Arc<Dispatched>, TransportError> {
    let format = headers.get(FORMAT_HEADER).map(|v| v.as_str());
    if format != Some(FORMAT) {
        return Err(TransportError::Store(format!(
            "message {seq} of the stream has format {format:?}, this node reads {FORMAT}"
        )));
    }
    let update: Update = serde_json::from_slice(payload)
        .map_err(|e| TransportError::Store(format!("corrupted message {seq}: {e}")))?;
    Ok(Arc::new(Dispatched::new(seq, update)))
}

pub(super) fn unavailable(reason: &str) -> TransportError {
    TransportError::Unavailable { reason: format!("NATS: {reason}"), retry_after: RETRY_AFTER }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_message_ids_are_stable_and_distinct() {
        let a = subject("MERCURE", "urn:uuid:1");
        assert_eq!(a, subject("MERCURE", "urn:uuid:1"));
        assert_ne!(a, subject("MERCURE", "urn:uuid:2"));
        assert!(a.starts_with("MERCURE.u.") && a.len() == "MERCURE.u.".len() + 16, "{a}");
        let update = Update::for_test("x");
        let mut other = update.clone();
        other.data = "different".into();
        let encode = |u: &Update| serde_json::to_vec(u).expect("encodes");
        assert_eq!(message_id(&update, &encode(&update)), message_id(&update, &encode(&update)));
        assert_ne!(message_id(&update, &encode(&update)), message_id(&other, &encode(&other)));
    }
}
