//! URL Pattern matchers (Mercure 1.0 `match_urlpattern`): a provisional implementation of the
//! module's interface, replaced by the complete one.
#![allow(missing_docs)]

use std::sync::Arc;

use url::Url;
use urlpattern::{UrlPattern, UrlPatternInit, UrlPatternMatchInput};

#[derive(Debug, Clone)]
pub struct UrlPatternMatcher {
    raw: String,
    base: Url,
    pattern: Arc<UrlPattern>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlPatternError {
    #[error("invalid URL pattern")]
    Invalid,
    #[error("URL pattern too complex (limit {limit} bytes)")]
    TooComplex { limit: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IndexKey {
    pub hostname: String,
    pub path_prefix: String,
}

impl UrlPatternMatcher {
    pub fn parse(pattern: &str, base: &Url) -> Result<Self, UrlPatternError> {
        let init =
            UrlPatternInit::parse_constructor_string::<regex::Regex>(pattern, Some(base.clone()))
                .map_err(|_| UrlPatternError::Invalid)?;
        let compiled =
            UrlPattern::parse(init, Default::default()).map_err(|_| UrlPatternError::Invalid)?;
        Ok(Self { raw: pattern.to_owned(), base: base.clone(), pattern: Arc::new(compiled) })
    }
    pub fn as_str(&self) -> &str {
        &self.raw
    }
    pub fn base(&self) -> &Url {
        &self.base
    }
    pub fn matches(&self, topic: &TopicUrl) -> bool {
        topic.0.as_ref().is_some_and(|url| {
            self.pattern.test(UrlPatternMatchInput::Url(url.clone())).unwrap_or(false)
        })
    }
    pub fn matches_str(&self, topic: &str) -> bool {
        self.matches(&TopicUrl::parse(topic, Some(&self.base)))
    }
    pub fn index_key(&self) -> Option<IndexKey> {
        None
    }
}

#[derive(Debug, Clone)]
pub struct TopicUrl(Option<Url>);

impl TopicUrl {
    pub fn parse(topic: &str, base: Option<&Url>) -> Self {
        Self(Url::options().base_url(base).parse(topic).ok())
    }
    pub fn hostname(&self) -> Option<&str> {
        self.0.as_ref().and_then(Url::host_str)
    }
    pub fn pathname(&self) -> Option<&str> {
        self.0.as_ref().map(Url::path)
    }
    pub fn is_absolute(topic: &str) -> bool {
        Url::parse(topic).is_ok()
    }
}
