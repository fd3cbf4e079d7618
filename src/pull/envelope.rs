//! The signed file a box pulls: a JSON envelope `{"serial", "config", "signature"}`
//! holding the configuration's TOML text, a serial that only goes up, and an
//! ed25519 signature (hex) over both.
//!
//! What is signed: the bytes `tillrelay-config-v1\n<serial>\n<config>`, so a
//! signature cannot be moved to another serial (a replay with a new number) nor to
//! another text, and cannot be mistaken for a signature of anything else.
//!
//! Invariants:
//! - The crypto is ring's (the TLS stack's own): nothing here is hand-written but the
//!   byte layout above and the hex.
//! - [`Envelope::open`] returns the text only when the signature verifies with the
//!   given key; every refusal says why, never quoting the text (a file that holds a
//!   secret by mistake must not put it in a log).

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::config::pull::{hex, unhex};

/// What the signature covers starts with this.
const CONTEXT: &str = "tillrelay-config-v1\n";

/// The pulled file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Goes up with every new configuration: an equal or lower one is a replay.
    pub serial: u64,
    /// The configuration, TOML.
    pub config: String,
    /// ed25519 over [`signed_bytes`], 128 hex digits.
    pub signature: String,
}

/// Why a pulled file is refused before its content is even looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not a signed configuration envelope ({0})")]
    Shape(String),
    #[error("the signature is missing or not 128 hex digits")]
    NoSignature,
    #[error("the signature does not verify with agent.config_key")]
    BadSignature,
}

fn signed_bytes(serial: u64, config: &str) -> Vec<u8> {
    format!("{CONTEXT}{serial}\n{config}").into_bytes()
}

impl Envelope {
    /// Parses `bytes` and checks the signature with `key`.
    pub fn open(bytes: &[u8], key: &[u8; 32]) -> Result<Envelope, Refused> {
        let e: Envelope = serde_json::from_slice(bytes).map_err(|e| {
            // serde_json's message names a line and column, never the content.
            Refused::Shape(format!("line {}, column {}", e.line(), e.column()))
        })?;
        let sig = unhex::<64>(&e.signature).ok_or(Refused::NoSignature)?;
        UnparsedPublicKey::new(&ED25519, key)
            .verify(&signed_bytes(e.serial, &e.config), &sig)
            .map_err(|_| Refused::BadSignature)?;
        Ok(e)
    }

    /// Signs `config` as `serial` with the private key's 32-byte seed.
    pub fn sign(serial: u64, config: String, seed: &[u8; 32]) -> Result<Envelope, String> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| "the key file holds no usable ed25519 key".to_string())?;
        let signature = hex(pair.sign(&signed_bytes(serial, &config)).as_ref());
        Ok(Envelope {
            serial,
            config,
            signature,
        })
    }

    /// The JSON written to the server (and kept in the state dir).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

/// A new private key's seed, from the system's random source.
pub fn new_seed() -> Result<[u8; 32], String> {
    use ring::rand::SecureRandom;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| "the system's random source failed".to_string())?;
    Ok(seed)
}

/// The public key of a seed.
pub fn public_key(seed: &[u8; 32]) -> Result<[u8; 32], String> {
    let pair = Ed25519KeyPair::from_seed_unchecked(seed)
        .map_err(|_| "the key file holds no usable ed25519 key".to_string())?;
    let mut out = [0u8; 32];
    out.copy_from_slice(pair.public_key().as_ref());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_serial_its_text_and_its_key() {
        let seed = [7u8; 32];
        let key = public_key(&seed).unwrap();
        let e = Envelope::sign(5, "[agent]\n".into(), &seed).unwrap();
        let json = e.to_json();
        assert_eq!(Envelope::open(json.as_bytes(), &key), Ok(e.clone()));
        let mut other = e.clone();
        other.serial = 6;
        assert_eq!(
            Envelope::open(other.to_json().as_bytes(), &key),
            Err(Refused::BadSignature)
        );
        let mut other = e.clone();
        other.config.push('#');
        assert_eq!(
            Envelope::open(other.to_json().as_bytes(), &key),
            Err(Refused::BadSignature)
        );
        let wrong = public_key(&[8u8; 32]).unwrap();
        assert_eq!(
            Envelope::open(json.as_bytes(), &wrong),
            Err(Refused::BadSignature)
        );
        let mut other = e;
        other.signature.clear();
        assert_eq!(
            Envelope::open(other.to_json().as_bytes(), &key),
            Err(Refused::NoSignature)
        );
        assert!(matches!(
            Envelope::open(b"[agent]\n", &key),
            Err(Refused::Shape(_))
        ));
    }
}
