//! RFC 9068 access tokens with Mercure `authorization_details` (Mercure 1.0): provisional.

/// The `type` of Mercure's authorization details (RFC 9396).
pub const MERCURE_DETAIL_TYPE: &str = "https://mercure.rocks/authorization-detail";

/// Provisional: whether the token's header says `typ: at+jwt`.
pub fn is_access_token(token: &str) -> bool {
    jsonwebtoken::decode_header(token).ok().and_then(|header| header.typ).is_some_and(|typ| {
        typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
    })
}
