//! RFC 9068 access tokens with Mercure `authorization_details` (Mercure 1.0): to be written.
