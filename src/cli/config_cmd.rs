//! `tillrelay config keygen` and `tillrelay config sign`: the integrator's side of
//! the configuration pull (`crate::pull`): a signing key, and a configuration
//! signed into the envelope the boxes fetch.
//!
//! Invariants:
//! - The private key file is created, never overwritten, readable by its owner
//!   only; the key is never printed.
//! - `sign` refuses what every box would refuse (a secret inline, a bootstrap key,
//!   text that is not TOML), so a mistake is caught before it is published.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::CliError;
use crate::config::pull::{hex, unhex};
use crate::pull::envelope::{self, Envelope};

/// `config keygen --out KEY`: a new key; prints the public key as the config line.
pub fn keygen(out: &Path) -> Result<(), CliError> {
    let seed = envelope::new_seed().map_err(|e| CliError::Other(anyhow::anyhow!(e)))?;
    let public = envelope::public_key(&seed).map_err(|e| CliError::Other(anyhow::anyhow!(e)))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| CliError::Other(anyhow::anyhow!("cannot create {}: {e}", out.display())))?;
    f.write_all(format!("{}\n", hex(&seed)).as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| CliError::Other(anyhow::anyhow!("cannot write {}: {e}", out.display())))?;
    println!(
        "# the private key is in {} (keep it off the boxes)",
        out.display()
    );
    println!("# put this line in [agent] of every box's local file:");
    println!("config_key = \"{}\"", hex(&public));
    Ok(())
}

/// `config sign --key KEY [--serial N] FILE`: the envelope, on stdout.
pub fn sign(key: &Path, serial: Option<u64>, file: &Path) -> Result<(), CliError> {
    let seed = std::fs::read_to_string(key)
        .ok()
        .and_then(|t| unhex::<32>(&t))
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{} is not a key from `tillrelay config keygen` (64 hex digits)",
                key.display()
            ))
        })?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::BadInput(format!("cannot read {}: {e}", file.display())))?;
    crate::pull::check_content(&text)
        .map_err(|e| CliError::BadInput(format!("{}: {e}", file.display())))?;
    let serial = serial.unwrap_or_else(|| crate::outbox::now().max(1) as u64);
    let env =
        Envelope::sign(serial, text, &seed).map_err(|e| CliError::Other(anyhow::anyhow!(e)))?;
    print!("{}", env.to_json());
    eprintln!(
        "signed {} as serial {serial} (a box applies only a serial above the one it runs)",
        file.display()
    );
    Ok(())
}
