//! Why a transport operation failed, in the kinds an HTTP client must tell apart: retry later,
//! send less, or report a fault. `crate::error` maps each kind to its status code.

use std::time::Duration;

use thiserror::Error;

/// How long a client should wait before retrying when the transport is shutting down or its
/// writer has stopped: the hub is going away, and behind a load balancer another node answers.
pub const RETRY_AFTER_CLOSED: Duration = Duration::from_secs(1);

/// Why a transport operation failed.
#[derive(Debug, Clone, Error)]
pub enum TransportError {
    /// The transport cannot take the operation now but expects to soon: it is shutting down, or
    /// the service it relies on (a cluster) is out of reach. Nothing was stored. Answered 503
    /// with `Retry-After`.
    #[error("{reason}")]
    Unavailable {
        /// What is unavailable, for the client and the log.
        reason: String,
        /// When a retry may succeed.
        retry_after: Duration,
    },
    /// The update is larger than the transport carries in one message. Nothing was stored.
    /// Answered 413.
    #[error("the update takes {size} bytes, more than the {limit} bytes the transport carries")]
    TooLarge {
        /// The encoded update's size in bytes.
        size: usize,
        /// The transport's limit in bytes.
        limit: usize,
    },
    /// The store refused or failed the operation (disk full, I/O error, corrupted file...).
    /// Answered 500: an operator must look.
    #[error("history store failure: {0}")]
    Store(String),
}

impl TransportError {
    /// The transport has shut down or its writer stopped.
    pub fn closed() -> Self {
        Self::Unavailable {
            reason: "the transport is not running".into(),
            retry_after: RETRY_AFTER_CLOSED,
        }
    }
}
