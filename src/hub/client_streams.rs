//! How many event streams each client holds: `max_streams_per_client`.
//!
//! An event stream is what a connection to the hub holds for long; every other request ends
//! within the read and body timeouts. One client address opening thousands of streams would
//! otherwise take the connections (and file descriptors) every other client needs. Each stream
//! takes a [`ClientSlot`] from [`StreamsPerClient`] before it is registered, and gives it back
//! when the stream is dropped, however it ends.
//!
//! A client is its address as the request resolves it: behind `trusted_proxies`, the forwarded
//! one. IPv6 clients are counted per /64 network, the block one subscriber line or host usually
//! holds whole, so that rotating addresses within it gains nothing. Requests without an address
//! (a Unix socket in a test) are not counted.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

/// The streams every client address holds, against `max_streams_per_client`.
#[derive(Debug)]
pub struct StreamsPerClient {
    limit: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// A stream of one client, counted until dropped.
#[derive(Debug)]
pub struct ClientSlot {
    streams: Arc<StreamsPerClient>,
    client: IpAddr,
}

/// The client already holds `limit` streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyStreams {
    /// `max_streams_per_client`.
    pub limit: usize,
}

impl StreamsPerClient {
    /// Counts streams against `limit` per client.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { limit, held: Mutex::default() })
    }

    /// Takes a slot for one more stream of `client`, or refuses when it already holds
    /// `limit`. A request without a client address gets no slot and is not refused.
    pub fn acquire(
        self: &Arc<Self>,
        client: Option<IpAddr>,
    ) -> Result<Option<ClientSlot>, TooManyStreams> {
        let Some(client) = client.map(counted_as) else { return Ok(None) };
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let streams = held.entry(client).or_default();
        if *streams >= self.limit {
            return Err(TooManyStreams { limit: self.limit });
        }
        *streams += 1;
        Ok(Some(ClientSlot { streams: self.clone(), client }))
    }

    /// Streams `client` holds now.
    #[cfg(test)]
    fn held(&self, client: IpAddr) -> usize {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.get(&counted_as(client)).copied().unwrap_or(0)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut held = self.streams.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(streams) = held.get_mut(&self.client) {
            *streams -= 1;
            // Forgotten at zero: the map holds only clients with open streams.
            if *streams == 0 {
                held.remove(&self.client);
            }
        }
    }
}

/// The key a client address is counted under: itself for IPv4 (and IPv4-mapped IPv6), its /64
/// network for IPv6.
fn counted_as(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(network))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("an address"))
    }

    #[test]
    fn a_client_holds_at_most_the_limit_and_gets_slots_back_when_streams_end() {
        let streams = StreamsPerClient::new(2);
        let first = streams.acquire(ip("192.0.2.1")).expect("first").expect("a slot");
        let second = streams.acquire(ip("192.0.2.1")).expect("second").expect("a slot");
        assert_eq!(streams.acquire(ip("192.0.2.1")).err(), Some(TooManyStreams { limit: 2 }));
        // Another client is not affected.
        let other = streams.acquire(ip("192.0.2.2")).expect("another client").expect("a slot");
        drop(first);
        let third = streams.acquire(ip("192.0.2.1")).expect("a slot was given back");
        drop((second, third, other));
        assert_eq!(streams.held(ip("192.0.2.1").expect("an address")), 0);
        assert!(streams.held.lock().expect("not poisoned").is_empty(), "no entry left behind");
    }

    #[test]
    fn ipv6_clients_count_per_64_network_and_mapped_ipv4_as_ipv4() {
        let streams = StreamsPerClient::new(1);
        let _held = streams.acquire(ip("2001:db8:1:2::1")).expect("first").expect("a slot");
        assert!(streams.acquire(ip("2001:db8:1:2:ffff::9")).is_err(), "same /64");
        assert!(streams.acquire(ip("2001:db8:1:3::1")).is_ok(), "another /64");
        let _v4 = streams.acquire(ip("192.0.2.7")).expect("v4").expect("a slot");
        assert!(streams.acquire(ip("::ffff:192.0.2.7")).is_err(), "mapped is the same client");
    }

    #[test]
    fn requests_without_an_address_are_not_counted() {
        let streams = StreamsPerClient::new(1);
        for _ in 0..3 {
            assert!(streams.acquire(None).expect("never refused").is_none());
        }
    }
}
