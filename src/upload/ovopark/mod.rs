//! Ovopark `open.ovopark.storehouse.sendOrder`: configuration, `iposJson` from a stamped
//! order, the `_sig` signature, reply classification, and the `getBusinessOrg` check.
//!
//! Invariants:
//! - One order per request; the `iposJson` text that is signed is the text that is sent.
//! - An identifier longer than the spec's max length rejects the order (with the field
//!   and length in the reason); a name is cut at a character boundary, with a warning.
//! - Every request carries a fresh signed `_nonce` (as the vendor's newer gateway SDK
//!   does), so a quick resend is never taken for a replay (-100).
//! - `_timestamp` is computed per attempt from the learned server clock, in the
//!   configured zone (default UTC+8); a timestamp refusal (code 16) costs at most one
//!   immediate extra attempt.
//! - Codes are classified by the spec's table; a code the spec does not name is retried
//!   (never rejected), except `208xxx` codes besides 208003, which the spec's family of
//!   order codes makes about this order's data (an assumption, named in the docs).
//!
//! Layout: [`settings`] (the `[ovopark]` / `[source.ovopark]` tables, their validation,
//! and the resolution of a source's identity), [`request`] (`iposJson`), [`sign`]
//! (`_sig`, `_timestamp`), [`classify`] (the reply's code table), [`client`] (the
//! requests, and the engine's [`crate::upload::Destination`]).

mod classify;
mod client;
mod request;
mod settings;
mod sign;
#[cfg(test)]
mod tests;

pub use crate::upload::form::form_encode;
pub use classify::*;
pub use client::*;
pub use request::*;
pub use settings::*;
pub use sign::*;

pub const SEND_ORDER: &str = "open.ovopark.storehouse.sendOrder";
/// `ovopark.give_up_after` default: an order refused with a code nobody recognises
/// is retried (capped backoff) this long before it is rejected.
pub const DEFAULT_GIVE_UP_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
pub const GET_BUSINESS_ORG: &str = "open.gateway.getBusinessOrg";
pub const DEFAULT_URL: &str = "https://openapi.opretail.com/cloud.api";
pub const DEFAULT_AID: &str = "S107";
pub const CONTENT_TYPE: &str = "application/x-www-form-urlencoded;charset=utf-8";
/// Default `orderType` labels per order kind.
pub const DEFAULT_ORDER_TYPES: [&str; 3] = ["销售", "退货", "作废"];
/// Max length (characters) of the string fields in `iposJson`.
pub const MAX_STR: usize = 100;
/// Max length (characters) of the numeric fields with a length (`depId`, `goodsNums`, `skuKeyId`).
pub const MAX_NUM: usize = 11;
