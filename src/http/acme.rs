//! HTTPS with certificates obtained automatically from an ACME server (Let's Encrypt by
//! default): the `acme_*` settings.
//!
//! [`AcmeCertificates`] is what rustls asks for a certificate at each handshake, as
//! [`super::tls::CertificateFiles`] is for `cert_file`. Its [`AcmeCertificates::run`] task owns
//! the ACME side: it orders a certificate for `acme_hosts` when none is stored, sleeps until a
//! third of the certificate's lifetime is left, orders the next one, and swaps it in. New
//! connections get the new certificate; open ones (and their event streams) are not touched.
//!
//! The challenge is TLS-ALPN-01 (RFC 8737), answered on the hub's own HTTPS port: the CA
//! connects offering only the `acme-tls/1` protocol, and gets a self-signed certificate carrying
//! the challenge's digest instead of the hub's. No second port (HTTP-01 needs port 80), no DNS
//! API (DNS-01). The CA must reach the hub's port as `https://HOST:443`, so the hub must listen
//! on 443 or behind a TCP (not TLS-terminating) forward from it.
//!
//! Until the first certificate exists, TLS handshakes fail: there is no placeholder certificate,
//! so `/readyz` (over HTTPS) cannot answer and a readiness probe keeps the node out of rotation.
//!
//! `acme_cert_dir` keeps `account.json` (the ACME account's key) and `certificate.json` (the
//! chain and its private key), both readable by the owner only. A restart serves the stored
//! certificate and orders nothing until it is due for renewal. The protocol client is
//! `instant-acme`; its HTTP client uses the `ring` provider like the rest of the hub.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::config::AcmeSettings;

/// The ALPN protocol of TLS-ALPN-01 validation connections (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// First wait after a failed order; doubled at each failure up to [`MAX_RETRY_DELAY`]. Long
/// enough not to spend Let's Encrypt's failed-validation allowance (5 per host per hour) in a
/// minute.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(15);
/// Longest wait between two failed orders.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// Time an order may take from its challenges being answered to its certificate being issued.
const ORDER_TIMEOUT: Duration = Duration::from_secs(90);

const ACCOUNT_FILE: &str = "account.json";
const CERTIFICATE_FILE: &str = "certificate.json";

/// The account file: the credentials, and the directory they belong to (a different
/// `acme_directory` needs a new account).
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// The certificate file: what was ordered from where, the chain and its key.
#[derive(Serialize, Deserialize)]
struct StoredCertificate {
    directory: String,
    hosts: Vec<String>,
    chain_pem: String,
    key_pem: String,
}

/// The certificate in use and its validity.
struct Current {
    key: Arc<CertifiedKey>,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl Current {
    /// When to order the next one: when a third of the lifetime is left (30 days of Let's
    /// Encrypt's 90, and still early enough for a short-lived test certificate).
    fn renew_at(&self) -> SystemTime {
        let lifetime = self.not_after.duration_since(self.not_before).unwrap_or_default();
        self.not_before + lifetime * 2 / 3
    }
}

/// Certificates from the ACME server for `acme_hosts`, as rustls asks for them.
pub struct AcmeCertificates {
    settings: AcmeSettings,
    provider: Arc<CryptoProvider>,
    current: RwLock<Option<Arc<Current>>>,
    /// TLS-ALPN-01 answers by host name, present while an order is being validated.
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for AcmeCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeCertificates").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl AcmeCertificates {
    /// Prepares `acme_cert_dir` and loads the stored certificate, if any fits the settings. An
    /// error names the setting to fix; nothing is asked of the ACME server yet.
    pub fn load(settings: &AcmeSettings) -> Result<Arc<Self>, String> {
        if settings.hosts.is_empty() {
            return Err("acme_hosts names no host".into());
        }
        if let Some(root) = &settings.ca_root {
            CertificateDer::from_pem_file(root).map_err(|e| {
                format!("acme_ca_root {} is not a readable PEM certificate: {e}", root.display())
            })?;
        }
        create_private_dir(&settings.cert_dir)?;
        let certificates = Arc::new(Self {
            settings: settings.clone(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            current: RwLock::new(None),
            challenges: RwLock::new(HashMap::new()),
        });
        match certificates.load_stored() {
            Ok(Some(current)) => {
                tracing::info!(
                    hosts = ?settings.hosts,
                    expires = %unix_seconds(current.not_after),
                    renew_at = %unix_seconds(current.renew_at()),
                    "ACME: serving the stored certificate"
                );
                certificates.set_current(current);
            }
            Ok(None) => tracing::info!(
                hosts = ?settings.hosts,
                "ACME: no stored certificate; TLS handshakes fail until one is obtained"
            ),
            Err(error) => tracing::warn!(%error, "ACME: the stored certificate is not used"),
        }
        Ok(certificates)
    }

    /// The rustls configuration of the hub's listener: HTTP/2, HTTP/1.1, and `acme-tls/1` for
    /// the CA's validation connections.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, String> {
        super::tls::server_config(self.provider.clone(), self.clone(), &[ACME_TLS_ALPN])
    }

    /// Obtains and renews the certificate until the process ends: each step is logged, and a
    /// failure (network, CA refusal) is retried with a growing delay while the current
    /// certificate, if any, stays in use.
    pub async fn run(self: Arc<Self>) {
        let mut failures: u32 = 0;
        loop {
            if let Some(current) = self.current() {
                let renew_at = current.renew_at();
                if let Ok(wait) = renew_at.duration_since(SystemTime::now()) {
                    tracing::info!(
                        renew_at = %unix_seconds(renew_at),
                        in_seconds = wait.as_secs(),
                        "ACME: renewal scheduled"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
            tracing::info!(hosts = ?self.settings.hosts, directory = %self.settings.directory,
                "ACME: ordering a certificate");
            match self.order().await {
                Ok(current) => {
                    failures = 0;
                    tracing::info!(
                        hosts = ?self.settings.hosts,
                        expires = %unix_seconds(current.not_after),
                        "ACME: new certificate in use for new connections"
                    );
                    self.set_current(current);
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let delay = FIRST_RETRY_DELAY
                        .saturating_mul(1 << failures.saturating_sub(1).min(12))
                        .min(MAX_RETRY_DELAY);
                    tracing::error!(%error, retry_in_seconds = delay.as_secs(),
                        "ACME: cannot obtain a certificate");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn current(&self) -> Option<Arc<Current>> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn set_current(&self, current: Current) {
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(Arc::new(current));
    }

    fn set_challenges(&self, challenges: HashMap<String, Arc<CertifiedKey>>) {
        *self.challenges.write().unwrap_or_else(std::sync::PoisonError::into_inner) = challenges;
    }

    /// The stored certificate, when it was ordered for these hosts from this directory and has
    /// not expired.
    fn load_stored(&self) -> Result<Option<Current>, String> {
        let path = self.settings.cert_dir.join(CERTIFICATE_FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let stored: StoredCertificate = serde_json::from_slice(&text)
            .map_err(|e| format!("{} is not a certificate file: {e}", path.display()))?;
        if stored.directory != self.settings.directory || stored.hosts != self.settings.hosts {
            tracing::info!("ACME: the stored certificate is for other hosts or another directory");
            return Ok(None);
        }
        let current = self.certified(&stored.chain_pem, &stored.key_pem)?;
        if current.not_after <= SystemTime::now() {
            tracing::info!("ACME: the stored certificate has expired");
            return Ok(None);
        }
        Ok(Some(current))
    }

    /// The certificate of a PEM chain and key, with its validity period.
    fn certified(&self, chain_pem: &str, key_pem: &str) -> Result<Current, String> {
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the ACME certificate is not a PEM chain: {e}"))?;
        let first = chain.first().ok_or("the ACME certificate chain is empty")?;
        let (_, parsed) = x509_parser::parse_x509_certificate(first)
            .map_err(|e| format!("the ACME certificate cannot be parsed: {e}"))?;
        let validity = parsed.validity();
        let time = |seconds: i64| UNIX_EPOCH + Duration::from_secs(seconds.max(0).unsigned_abs());
        let (not_before, not_after) =
            (time(validity.not_before.timestamp()), time(validity.not_after.timestamp()));
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| format!("the ACME certificate's key is not PEM: {e}"))?;
        let key = CertifiedKey::from_der(chain, key, &self.provider)
            .map_err(|e| format!("the ACME certificate cannot be used: {e}"))?;
        Ok(Current { key: Arc::new(key), not_before, not_after })
    }

    /// One order, from account to stored certificate.
    async fn order(&self) -> Result<Current, String> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> =
            self.settings.hosts.iter().cloned().map(Identifier::Dns).collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| format!("acme_directory refused the order: {e}"))?;
        let result = self.validate(&mut order).await;
        // The answers are of no use once the order is decided, whatever the outcome.
        self.set_challenges(HashMap::new());
        result?;
        tracing::info!("ACME: challenges validated; asking for the certificate");
        let key_pem =
            order.finalize().await.map_err(|e| format!("cannot finalize the ACME order: {e}"))?;
        let chain_pem = order
            .poll_certificate(&retry_policy())
            .await
            .map_err(|e| format!("the ACME certificate was not issued: {e}"))?;
        let current = self.certified(&chain_pem, &key_pem)?;
        let stored = StoredCertificate {
            directory: self.settings.directory.clone(),
            hosts: self.settings.hosts.clone(),
            chain_pem,
            key_pem,
        };
        self.store(CERTIFICATE_FILE, &stored)?;
        Ok(current)
    }

    /// Answers every pending authorization of `order` with TLS-ALPN-01 and waits for the order
    /// to be ready.
    async fn validate(&self, order: &mut instant_acme::Order) -> Result<(), String> {
        let mut answers = HashMap::new();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization =
                authorization.map_err(|e| format!("cannot read an ACME authorization: {e}"))?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("ACME authorization is {other:?}")),
            }
            let mut challenge = authorization
                .challenge(ChallengeType::TlsAlpn01)
                .ok_or("acme_directory offers no tls-alpn-01 challenge (the only one supported)")?;
            let host = challenge.identifier().to_string();
            let answer =
                self.challenge_certificate(&host, challenge.key_authorization().digest())?;
            answers.insert(host.clone(), Arc::new(answer));
            // Served before the CA is told to look.
            self.set_challenges(answers.clone());
            challenge
                .set_ready()
                .await
                .map_err(|e| format!("cannot start the ACME challenge for {host}: {e}"))?;
            tracing::info!(%host, "ACME: tls-alpn-01 challenge ready");
        }
        let status = order
            .poll_ready(&retry_policy())
            .await
            .map_err(|e| format!("ACME order not ready: {e}"))?;
        if status != OrderStatus::Ready {
            let problems: Vec<String> = order_problems(order).await;
            return Err(format!("ACME order is {status:?}: {}", problems.join("; ")));
        }
        Ok(())
    }

    /// The self-signed certificate that answers a TLS-ALPN-01 challenge for `host`: its
    /// `acmeIdentifier` extension holds the SHA-256 digest of the key authorization.
    fn challenge_certificate(
        &self,
        host: &str,
        digest: impl AsRef<[u8]>,
    ) -> Result<CertifiedKey, String> {
        let failed = |e: rcgen::Error| format!("cannot make the ACME challenge certificate: {e}");
        let mut params = rcgen::CertificateParams::new(vec![host.to_owned()]).map_err(failed)?;
        params.custom_extensions =
            vec![rcgen::CustomExtension::new_acme_identifier(digest.as_ref())];
        let key = rcgen::KeyPair::generate().map_err(failed)?;
        let certificate = params.self_signed(&key).map_err(failed)?;
        let private = PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let signing = self
            .provider
            .key_provider
            .load_private_key(private)
            .map_err(|e| format!("cannot use the ACME challenge key: {e}"))?;
        Ok(CertifiedKey::new(vec![certificate.der().clone()], signing))
    }

    /// The ACME account: the stored one for this directory, else a new one (stored).
    async fn account(&self) -> Result<Account, String> {
        let path = self.settings.cert_dir.join(ACCOUNT_FILE);
        if let Ok(text) = std::fs::read(&path) {
            match serde_json::from_slice::<StoredAccount>(&text) {
                Ok(stored) if stored.directory == self.settings.directory => {
                    return self
                        .builder()?
                        .from_credentials(stored.credentials)
                        .await
                        .map_err(|e| format!("acme_directory cannot be reached: {e}"));
                }
                Ok(_) => tracing::info!("ACME: the stored account is for another directory"),
                Err(error) => tracing::warn!(%error, path = %path.display(),
                    "ACME: the stored account cannot be read; creating another"),
            }
        }
        let contact = self.settings.email.as_ref().map(|email| format!("mailto:{email}"));
        let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
        let new = NewAccount {
            contact: &contact,
            // Setting `acme_hosts` is taken as agreeing to the CA's terms (README).
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let (account, credentials) = self
            .builder()?
            .create(&new, self.settings.directory.clone(), None)
            .await
            .map_err(|e| format!("acme_directory refused a new account: {e}"))?;
        tracing::info!(id = %account.id(), "ACME: account created");
        let stored = StoredAccount { directory: self.settings.directory.clone(), credentials };
        self.store(ACCOUNT_FILE, &stored)?;
        Ok(account)
    }

    fn builder(&self) -> Result<instant_acme::AccountBuilder, String> {
        match &self.settings.ca_root {
            Some(root) => Account::builder_with_root(root)
                .map_err(|e| format!("acme_ca_root {} cannot be used: {e}", root.display())),
            None => Account::builder()
                .map_err(|e| format!("cannot load the system's root certificates: {e}")),
        }
    }

    /// Writes `value` to `name` in `acme_cert_dir` in one step (written aside, then renamed),
    /// readable by the owner only: both files hold private keys.
    fn store(&self, name: &str, value: &impl Serialize) -> Result<(), String> {
        let dir = &self.settings.cert_dir;
        let failed =
            |e: std::io::Error| format!("cannot write to acme_cert_dir {}: {e}", dir.display());
        let text =
            serde_json::to_vec_pretty(value).map_err(|e| format!("cannot encode {name}: {e}"))?;
        let staged = dir.join(format!(".{name}.new"));
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&staged)
                .map_err(failed)?;
            file.write_all(&text).map_err(failed)?;
            file.sync_all().map_err(failed)?;
        }
        std::fs::rename(&staged, dir.join(name)).map_err(failed)
    }
}

impl ResolvesServerCert for AcmeCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A validation connection offers `acme-tls/1` and nothing else (RFC 8737 §3).
        let validation = hello.alpn().is_some_and(|offered| {
            let offered: Vec<&[u8]> = offered.collect();
            offered == [ACME_TLS_ALPN]
        });
        if validation {
            let host = hello.server_name()?.to_ascii_lowercase();
            let challenges =
                self.challenges.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            return challenges.get(&host).cloned();
        }
        Some(self.current()?.key.clone())
    }
}

/// The CA's reasons for the authorizations it refused.
async fn order_problems(order: &mut instant_acme::Order) -> Vec<String> {
    let mut problems = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(authorization)) = authorizations.next().await {
        for challenge in &authorization.challenges {
            if let Some(error) = &challenge.error {
                problems.push(format!("{}: {error}", authorization.identifier()));
            }
        }
    }
    problems
}

fn retry_policy() -> RetryPolicy {
    RetryPolicy::new().timeout(ORDER_TIMEOUT)
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create acme_cert_dir {}: {e}", dir.display()))
}

/// A time as seconds since the Unix epoch, for logs.
fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> AcmeSettings {
        AcmeSettings {
            hosts: vec!["hub.example".into()],
            directory: "https://acme.invalid/directory".into(),
            email: None,
            cert_dir: dir.join("acme"),
            ca_root: None,
        }
    }

    #[test]
    fn a_challenge_certificate_names_the_host_and_is_served_only_to_validation() {
        let dir = tempfile::tempdir().expect("temp dir");
        let certificates = AcmeCertificates::load(&settings(dir.path())).expect("loaded");
        let answer = certificates.challenge_certificate("hub.example", [7u8; 32]).expect("made");
        let (_, parsed) =
            x509_parser::parse_x509_certificate(&answer.cert[0]).expect("a certificate");
        let acme_identifier =
            x509_parser::oid_registry::Oid::from(&[1, 3, 6, 1, 5, 5, 7, 1, 31]).expect("an OID");
        let extension = parsed
            .extensions()
            .iter()
            .find(|extension| extension.oid == acme_identifier)
            .expect("the acmeIdentifier extension");
        assert!(extension.critical);
        // An OCTET STRING of the 32-byte digest.
        assert_eq!(extension.value, [&[4u8, 32][..], &[7; 32]].concat());
        assert!(certificates.current().is_none(), "nothing to serve before an order");
    }

    #[test]
    fn a_stored_certificate_for_other_hosts_is_not_used_and_bad_settings_are_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut acme = settings(dir.path());
        std::fs::create_dir_all(&acme.cert_dir).expect("dir");
        std::fs::write(acme.cert_dir.join(CERTIFICATE_FILE), "not json").expect("write");
        let certificates = AcmeCertificates::load(&acme).expect("loaded, the file ignored");
        assert!(certificates.current().is_none());

        acme.ca_root = Some(dir.path().join("missing.pem"));
        let error = AcmeCertificates::load(&acme).expect_err("refused");
        assert!(error.starts_with("acme_ca_root"), "{error}");
        acme.ca_root = None;
        acme.hosts.clear();
        let error = AcmeCertificates::load(&acme).expect_err("refused");
        assert!(error.starts_with("acme_hosts"), "{error}");
    }

    #[test]
    fn renewal_is_due_when_a_third_of_the_lifetime_is_left() {
        let dir = tempfile::tempdir().expect("temp dir");
        let certificates = AcmeCertificates::load(&settings(dir.path())).expect("loaded");
        let key = certificates.challenge_certificate("hub.example", [0u8; 32]).expect("made");
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let current = Current {
            key: Arc::new(key),
            not_before: start,
            not_after: start + Duration::from_secs(90 * 86400),
        };
        assert_eq!(current.renew_at(), start + Duration::from_secs(60 * 86400));
    }
}
