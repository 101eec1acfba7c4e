//! Discovery: finding the hubs of a resource, and its canonical topic, in its `Link` headers
//! (RFC 8288), as the Mercure specification describes.
//!
//! ```text
//! Link: <https://example.com/.well-known/mercure>; rel="mercure"
//! Link: </books/foo.jsonld>; rel="self"
//! ```
//!
//! [`parse_link_headers`] reads header values already fetched, with no I/O: any number of
//! headers, several comma-separated links in each, quoted or bare parameter values, `rel` with
//! several space-separated relation types compared without regard to case, relative URLs
//! resolved against the resource's URL. A malformed link is skipped, never a reason to panic
//! or to lose the well-formed ones around it. [`discover`] and [`discover_with`] fetch the
//! resource and read its answer.

use reqwest::header::{HeaderMap, LINK};

/// The relation type of a hub link.
pub const MERCURE_REL: &str = "mercure";
/// The relation type of the canonical URL of the resource (its topic).
pub const SELF_REL: &str = "self";

/// A hub advertised by a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubLink {
    /// The hub's URL, resolved against the resource's.
    pub url: url::Url,
    /// The `last-event-id` attribute: the last update dispatched when the resource was
    /// generated. Subscribe from it ([`SubscriberBuilder::last_event_id`]) to miss nothing
    /// published since.
    ///
    /// [`SubscriberBuilder::last_event_id`]: crate::SubscriberBuilder::last_event_id
    pub last_event_id: Option<String>,
    /// The `content-type` attribute: the type of the updates' data, when it differs from the
    /// resource's.
    pub content_type: Option<String>,
}

/// What a resource's `Link` headers say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Discovery {
    /// The hubs (`rel="mercure"`), in the order of the headers.
    pub hubs: Vec<HubLink>,
    /// The canonical URL of the resource (`rel="self"`, the first one): the topic to subscribe
    /// to. When absent the resource's own URL may serve.
    pub self_url: Option<url::Url>,
}

impl Discovery {
    /// The first hub, the one to use when any will do.
    pub fn hub(&self) -> Option<&HubLink> {
        self.hubs.first()
    }
}

/// Why a resource could not be fetched for discovery.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The resource URL is not a URL.
    #[error("invalid resource URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The resource could not be fetched.
    #[error("cannot fetch the resource: {}", crate::http::describe(.0))]
    Network(#[source] reqwest::Error),
    /// The server answered with a status other than a success.
    #[error("the resource answered {status}")]
    Status {
        /// The status.
        status: reqwest::StatusCode,
    },
}

/// Fetches `resource` with a `GET` and reads its `Link` headers (the body is not read). For
/// `HEAD` or extra headers, use [`discover_with`].
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let client = reqwest::Client::new();
/// let found = quicksilver_client::discovery::discover(&client, "https://example.com/books/1").await?;
/// if let Some(hub) = found.hub() {
///     println!("hub: {}, topic: {:?}", hub.url, found.self_url);
/// }
/// # Ok(())
/// # }
/// ```
pub async fn discover(
    client: &reqwest::Client,
    resource: &str,
) -> Result<Discovery, DiscoveryError> {
    let url = url::Url::parse(resource).map_err(|error| DiscoveryError::InvalidUrl {
        url: resource.to_owned(),
        reason: error.to_string(),
    })?;
    discover_with(client.get(url)).await
}

/// Sends `request` (a `GET` or `HEAD` of the resource, with whatever headers it needs) and reads
/// the `Link` headers of the answer, resolving them against the URL that answered (after
/// redirections). `discover_with(client.head(url))` asks for the headers alone.
pub async fn discover_with(request: reqwest::RequestBuilder) -> Result<Discovery, DiscoveryError> {
    let response = request.send().await.map_err(DiscoveryError::Network)?;
    let status = response.status();
    if !status.is_success() {
        return Err(DiscoveryError::Status { status });
    }
    Ok(from_headers(response.headers(), response.url()))
}

/// Reads the `Link` headers of `headers`, for a resource at `base`.
pub fn from_headers(headers: &HeaderMap, base: &url::Url) -> Discovery {
    parse_link_headers(headers.get_all(LINK).iter().map(|value| value.as_bytes()), base)
}

/// Reads `Link` header values (as bytes: header values need not be UTF-8) for a resource at
/// `base`.
///
/// ```
/// use quicksilver_client::discovery::parse_link_headers;
///
/// let base = url::Url::parse("https://example.com/books/1")?;
/// let found = parse_link_headers(
///     [&b"</.well-known/mercure>; rel=\"mercure\", <https://example.com/books/1.jsonld>; rel=self"[..]],
///     &base,
/// );
/// assert_eq!(found.hubs[0].url.as_str(), "https://example.com/.well-known/mercure");
/// assert_eq!(found.self_url.map(String::from).as_deref(), Some("https://example.com/books/1.jsonld"));
/// # Ok::<(), url::ParseError>(())
/// ```
pub fn parse_link_headers<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
    base: &url::Url,
) -> Discovery {
    let mut discovery = Discovery::default();
    for value in values {
        for link in parse_links(value) {
            let Some(url) = link.target_url(base) else { continue };
            if !link.is_about(base) {
                continue;
            }
            let rels = link.param("rel").unwrap_or_default();
            let has =
                |wanted: &str| rels.split([' ', '\t']).any(|rel| rel.eq_ignore_ascii_case(wanted));
            if has(MERCURE_REL) {
                discovery.hubs.push(HubLink {
                    url: url.clone(),
                    last_event_id: link.param("last-event-id").map(str::to_owned),
                    content_type: link.param("content-type").map(str::to_owned),
                });
            }
            if has(SELF_REL) && discovery.self_url.is_none() {
                discovery.self_url = Some(url);
            }
        }
    }
    discovery
}

/// One link of a header: its target and parameters (names in lower case, in order).
#[derive(Debug, PartialEq, Eq)]
struct Link {
    target: String,
    params: Vec<(String, String)>,
}

impl Link {
    /// The value of the first parameter `name`: RFC 8288 ignores the later ones.
    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, value)| value.as_str())
    }

    fn target_url(&self, base: &url::Url) -> Option<url::Url> {
        base.join(self.target.trim()).ok()
    }

    /// Whether the link is about the resource itself: an `anchor` naming another resource
    /// makes it a link from that one.
    fn is_about(&self, base: &url::Url) -> bool {
        let Some(anchor) = self.param("anchor") else { return true };
        let without_fragment = |mut url: url::Url| {
            url.set_fragment(None);
            url
        };
        base.join(anchor)
            .is_ok_and(|anchor| without_fragment(anchor) == without_fragment(base.clone()))
    }
}

/// The links of one header value. Malformed links are skipped up to the next comma outside
/// `<...>` and quotes.
fn parse_links(value: &[u8]) -> Vec<Link> {
    let mut cursor = Cursor { bytes: value, at: 0 };
    let mut links = Vec::new();
    loop {
        cursor.skip(|b| b == b',' || is_space(b));
        match cursor.peek() {
            None => return links,
            Some(b'<') => {}
            Some(_) => {
                cursor.skip_link();
                continue;
            }
        }
        cursor.at += 1;
        // A URI holds neither `<` nor `>`: a `<` before the closing `>` means this link was
        // never closed, and a new one starts there.
        let rest = cursor.bytes.get(cursor.at..).unwrap_or_default();
        let Some(end) = rest.iter().position(|&b| b == b'<' || b == b'>') else { return links };
        if rest[end] == b'<' {
            cursor.at += end;
            continue;
        }
        let target = String::from_utf8_lossy(&rest[..end]).into_owned();
        cursor.at += end + 1;
        let mut link = Link { target, params: Vec::new() };
        if cursor.read_params(&mut link.params) {
            links.push(link);
        } else {
            cursor.skip_link();
        }
    }
}

fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t')
}

/// A position in a header value.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip(&mut self, what: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&what) {
            self.at += 1;
        }
    }

    /// Reads `; name[=value]` parameters up to the end of the link (a comma, or the end);
    /// `false` on anything else.
    fn read_params(&mut self, params: &mut Vec<(String, String)>) -> bool {
        loop {
            self.skip(is_space);
            match self.peek() {
                None | Some(b',') => return true,
                Some(b';') => self.at += 1,
                Some(_) => return false,
            }
            self.skip(is_space);
            let name = self.token();
            self.skip(is_space);
            let value = if self.peek() == Some(b'=') {
                self.at += 1;
                self.skip(is_space);
                if self.peek() == Some(b'"') {
                    self.at += 1;
                    match self.quoted() {
                        Some(value) => value,
                        None => return false,
                    }
                } else {
                    self.token()
                }
            } else {
                String::new()
            };
            // `;;` and `; =x` name nothing: tolerated, ignored.
            if !name.is_empty() {
                params.push((name.to_ascii_lowercase(), value));
            }
        }
    }

    /// A bare name or value: up to a space, `;`, `,` or `=`.
    fn token(&mut self) -> String {
        let start = self.at;
        self.skip(|b| !matches!(b, b' ' | b'\t' | b';' | b',' | b'='));
        String::from_utf8_lossy(&self.bytes[start..self.at]).into_owned()
    }

    /// The rest of a quoted string whose opening quote was read. `None` when it never closes,
    /// with the cursor back after the opening quote: the quote is then taken for a stray
    /// character, and the next comma can end the malformed link.
    fn quoted(&mut self) -> Option<String> {
        let start = self.at;
        let mut value = Vec::new();
        loop {
            let Some(byte) = self.peek() else {
                self.at = start;
                return None;
            };
            self.at += 1;
            match byte {
                b'"' => return Some(String::from_utf8_lossy(&value).into_owned()),
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        value.push(escaped);
                        self.at += 1;
                    }
                }
                other => value.push(other),
            }
        }
    }

    /// Skips the rest of a malformed link: up to the next comma outside `<...>` and quotes.
    fn skip_link(&mut self) {
        let (mut in_target, mut in_quotes) = (false, false);
        while let Some(byte) = self.peek() {
            match byte {
                b',' if !in_target && !in_quotes => return,
                b'<' if !in_quotes => in_target = true,
                b'>' if !in_quotes => in_target = false,
                b'"' if !in_target => in_quotes = !in_quotes,
                b'\\' if in_quotes => self.at += 1,
                _ => {}
            }
            self.at += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> url::Url {
        url::Url::parse("https://example.com/books/1?x=y").expect("a URL")
    }

    fn discover(values: &[&str]) -> Discovery {
        parse_link_headers(values.iter().map(|v| v.as_bytes()), &base())
    }

    fn hubs(values: &[&str]) -> Vec<String> {
        discover(values).hubs.into_iter().map(|hub| hub.url.to_string()).collect()
    }

    #[test]
    fn the_specification_examples() {
        let found = discover(&[
            "</books/foo.jsonld>; rel=\"self\"",
            "<https://example.com/.well-known/mercure>; rel=\"mercure\"",
        ]);
        assert_eq!(
            hubs(&["<https://example.com/.well-known/mercure>; rel=\"mercure\""]),
            ["https://example.com/.well-known/mercure"]
        );
        assert_eq!(
            found.hub().map(|hub| hub.url.as_str()),
            Some("https://example.com/.well-known/mercure")
        );
        assert_eq!(
            found.self_url.map(String::from).as_deref(),
            Some("https://example.com/books/foo.jsonld")
        );
    }

    #[test]
    fn several_headers_and_several_links_per_header_in_order() {
        assert_eq!(
            hubs(&[
                "<https://a.example/hub>; rel=mercure, <https://b.example/hub>; rel=\"mercure\"",
                "<https://c.example/>; rel=\"next\"",
                "<https://d.example/hub>;rel=mercure",
            ]),
            ["https://a.example/hub", "https://b.example/hub", "https://d.example/hub"]
        );
    }

    #[test]
    fn relative_urls_resolve_against_the_resource() {
        assert_eq!(
            hubs(&["</.well-known/mercure>; rel=mercure, <hub>; rel=mercure, <>; rel=mercure"]),
            [
                "https://example.com/.well-known/mercure",
                "https://example.com/books/hub",
                "https://example.com/books/1?x=y",
            ]
        );
        assert_eq!(hubs(&["<//cdn.example/hub>; rel=mercure"]), ["https://cdn.example/hub"]);
    }

    #[test]
    fn rel_holds_several_types_compared_without_case() {
        let found = discover(&["<https://a.example/x>; rel=\"SELF  Mercure\tother\""]);
        assert_eq!(found.hubs.len(), 1);
        assert_eq!(found.self_url.map(String::from).as_deref(), Some("https://a.example/x"));
        assert!(hubs(&["<https://a.example/x>; rel=\"mercure-hub\""]).is_empty());
        assert!(hubs(&["<https://a.example/x>; REL=MERCURE"]).len() == 1, "names too");
        assert!(hubs(&["<https://a.example/x>; rev=mercure"]).is_empty());
    }

    #[test]
    fn the_first_rel_counts_and_the_first_self() {
        assert!(hubs(&["<https://a.example/x>; rel=next; rel=mercure"]).is_empty());
        let found =
            discover(&["<https://a.example/1>; rel=self", "<https://a.example/2>; rel=self"]);
        assert_eq!(found.self_url.map(String::from).as_deref(), Some("https://a.example/1"));
    }

    #[test]
    fn attributes_of_a_hub_link() {
        let found = discover(&[
            "</.well-known/mercure>; rel=\"mercure\"; last-event-id=\"urn:uuid:1\"; \
             type=\"mercure\"; content-type=\"application/json\"",
            "</other>; rel=mercure; Last-Event-ID=bare",
        ]);
        assert_eq!(found.hubs[0].last_event_id.as_deref(), Some("urn:uuid:1"));
        assert_eq!(found.hubs[0].content_type.as_deref(), Some("application/json"));
        assert_eq!(found.hubs[1].last_event_id.as_deref(), Some("bare"));
        assert_eq!(found.hubs[1].content_type, None);
    }

    #[test]
    fn commas_and_semicolons_inside_urls_and_quotes() {
        let found = discover(&[
            "<https://a.example/a,b;c>; title=\"x, y; rel=mercure\"; rel=\"mercure\", \
             <https://b.example/>; title=\"quote \\\" comma,\"; rel=mercure",
        ]);
        let urls: Vec<&str> = found.hubs.iter().map(|hub| hub.url.as_str()).collect();
        assert_eq!(urls, ["https://a.example/a,b;c", "https://b.example/"]);
    }

    #[test]
    fn an_anchor_elsewhere_makes_a_link_about_another_resource() {
        assert!(hubs(&["<https://h.example/>; rel=mercure; anchor=\"/books/2\""]).is_empty());
        assert_eq!(hubs(&["<https://h.example/>; rel=mercure; anchor=\"#part\""]).len(), 1);
        assert_eq!(hubs(&["<https://h.example/>; rel=mercure; anchor=\"\""]).len(), 1);
    }

    #[test]
    fn malformed_links_are_skipped_and_the_others_kept() {
        let good = "<https://good.example/>; rel=mercure";
        for garbage in [
            "https://no-brackets.example/; rel=mercure",
            "<https://unclosed.example/; rel=mercure",
            "<https://x.example/> rel=mercure",
            "<https://x.example/>; rel=\"unclosed",
            "<http://[::1/>; rel=mercure",
            ";;;",
            "<>>; rel=mercure",
            "\"<quoted>\"; rel=mercure",
            "",
            ",,,",
        ] {
            let value = format!("{garbage}, {good}");
            let found = hubs(&[&value]);
            assert!(
                found.last().map(String::as_str) == Some("https://good.example/"),
                "{value:?}: {found:?}"
            );
        }
        assert!(hubs(&["<a>; rel=mercure; =x; ;; flag; rel2"]).len() == 1, "odd parameters");
        // Bytes that are not UTF-8 are replaced, not fatal.
        let base = base();
        let found = parse_link_headers([&b"<https://h.example/\xFF>; rel=mercure"[..]], &base);
        assert_eq!(found.hubs[0].url.as_str(), "https://h.example/%EF%BF%BD");
    }

    #[test]
    fn garbage_never_panics() {
        let samples: [&[u8]; 6] = [
            b"<https://a.example/>; rel=\"mercure self\"; last-event-id=\"a\\\"b\", <x>",
            b"<<<>>>;;;===\"\"\"\\",
            b"\xFF\xFE<\xC3>; rel=\xC3",
            b"< >; rel = mercure ; anchor = \"\\",
            b"<https://a.example/>;rel=mercure,<",
            b"\"",
        ];
        for sample in samples {
            for end in 0..=sample.len() {
                for start in 0..=end {
                    let _ = parse_link_headers([&sample[start..end]], &base());
                }
            }
        }
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let alphabet = b"<>;,=\" \\\trelmcu:/ah";
        let mut bytes = Vec::new();
        for _ in 0..5000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.push(alphabet[(state % alphabet.len() as u64) as usize]);
            if bytes.len() > 40 {
                bytes.clear();
            }
            let _ = parse_link_headers([bytes.as_slice()], &base());
        }
    }
}
