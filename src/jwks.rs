//! JWK Sets of trusted issuers (`jwks_uri`), fetched and refreshed: to be written.
