//! The command line: argument parsing (clap) and the commands that are not the
//! daemon itself. `main` only calls [`main_with`]; every error becomes one message and
//! one documented exit code here.
//!
//! Exit codes (also in docs/CLI.md):
//! - 0: success
//! - 1: failure (database, I/O, the daemon could not start)
//! - 2: the command line is wrong (clap's own code)
//! - 3: the configuration is unreadable or invalid
//! - 4: `parse` found input it could not read (orders were still printed)
//! - 5: `parse --expect`: the orders differ from the expected ones; `status`: a
//!   damaged queue was moved aside (the status is printed all the same)

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::capture::formats;
use crate::config::{self, Config, ConfigError, SourceKind};
use crate::outbox::{self, DeliveryState, Outbox, OutboxError};

mod config_cmd;
mod parse;
mod status;

use parse::parse;
pub(crate) use status::human_age;
use status::status;

#[derive(Parser, Debug)]
#[command(
    name = "tillrelay",
    // The version and the commit it was built from (build.rs).
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("TILLRELAY_COMMIT"), ")"),
    about = "Captures every sale at the till and delivers it to Ovopark and Wangdiantong"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, env = "TILLRELAY_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent (the daemon): capture, store, upload, until SIGTERM/SIGINT.
    Run,
    /// Show per source and destination what is captured, queued, delivered, rejected.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List stored orders (newest first) with their delivery states.
    Orders {
        #[arg(long)]
        json: bool,
        /// Only orders with a delivery in this state.
        #[arg(long, value_parser = ["pending", "delivered", "rejected", "quarantined"])]
        state: Option<String>,
        /// Only orders of this source.
        #[arg(long)]
        source: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Validate the configuration and print it as the agent will use it: TOML with the
    /// file's keys and every default filled in (secrets as ***); warnings go to stderr.
    CheckConfig {
        /// Also call each cloud with a harmless request: credentials, reachability,
        /// permission for the configured enterprise.
        #[arg(long)]
        online: bool,
        /// Print the machine form instead (docs/CLI.md has its schema).
        #[arg(long)]
        json: bool,
    },
    /// Put rejected deliveries back in the queue (after fixing the config or the data)
    /// and wake the running agent.
    Retry {
        /// Only this destination (ovopark, wdt).
        #[arg(long)]
        dest: Option<String>,
        /// Only this order number.
        #[arg(long)]
        order: Option<String>,
    },
    /// Wake the running agent's uploaders: send what is pending now (SIGUSR1).
    Flush,
    /// Make the running agent read its configuration again (SIGHUP), and report
    /// what it did: sources and destinations added, removed or changed take effect
    /// without a restart; an invalid file is refused (exit 3, with check-config's
    /// messages) and the running configuration stays.
    Reload,
    /// Record what the POS sends on a serial source into a capture file (card
    /// numbers masked), passing it on to the printer meanwhile. Stop the agent first:
    /// it holds the port.
    Record {
        #[arg(long)]
        source: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Run the current templates over the receipts the journal kept unparsed (or the
    /// entries named with --id), storing the orders they now yield.
    Reparse {
        #[arg(long)]
        source: Option<String>,
        /// A journal entry (repeatable); default: every unparsed entry.
        #[arg(long = "id")]
        ids: Vec<i64>,
    },
    /// Serve local emulators of both clouds (strict to their specs) for tests and
    /// integrators: Ovopark at /cloud.api, Wangdiantong at /openapi.
    Emulate {
        #[arg(long, default_value = "127.0.0.1:8480")]
        listen: String,
        /// Emulator tenants and credentials (TOML); default: the demo tenant.
        #[arg(long = "emu-config")]
        emu_config: Option<PathBuf>,
    },
    /// Run the whole product on loopback: emulators, the agent, the sample exports,
    /// and a table of what each cloud accepted. Needs no config and no set-up.
    Demo,
    /// Show what a source would make of a file, without storing anything.
    Parse {
        /// The file to read.
        file: PathBuf,
        /// The source whose format and settings apply.
        #[arg(long)]
        source: String,
        /// Print the orders as canonical JSON.
        #[arg(long)]
        json: bool,
        /// Stamp the orders (source, shop, machine_id, video window) as the agent would.
        #[arg(long)]
        stamp: bool,
        /// Receipts: also show each receipt's decoded text on stdout, before the
        /// orders, with the line numbers template errors cite (for writing a
        /// template at the till). Not with --json, whose stdout is JSON alone.
        #[arg(long, conflicts_with = "json")]
        text: bool,
        /// Compare the orders with this JSON file (as `--json` prints them),
        /// field by field; exit 0 only when they are equal, 5 when they differ.
        #[arg(long, value_name = "EXPECTED.json")]
        expect: Option<PathBuf>,
        /// Receipts: when they were captured (local time), which places a date
        /// printed without its year; default: the file's modification time.
        #[arg(long, value_name = "YYYY-MM-DD HH:MM:SS", value_parser = captured_at)]
        captured_at: Option<chrono::NaiveDateTime>,
    },
    /// The configuration pull's keys and signed files (docs/OPERATIONS.md, "A
    /// fleet from one server").
    #[command(name = "config", subcommand)]
    ConfigFile(ConfigCommand),
    /// Write the manual pages or shell completions (for packaging: cross/deb.sh).
    #[command(hide = true)]
    Generate {
        #[arg(value_parser = ["man", "completions"])]
        what: String,
        /// Directory to write into (created).
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Make a signing key: the private key goes to --out (created, mode 0600), the
    /// public key is printed as the `config_key` line for the boxes' local files.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a configuration file for `config_url`: prints the envelope to publish.
    /// Refuses a file with a secret inline or a local-only key.
    Sign {
        /// The private key from `config keygen`.
        #[arg(long)]
        key: PathBuf,
        /// The serial (default: the current unix time): a box applies only a
        /// serial above the one it runs.
        #[arg(long)]
        serial: Option<u64>,
        /// The configuration (TOML) to sign.
        file: PathBuf,
    },
}

/// An error at the edge, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    BadInput(String),
    /// `parse --expect`: the orders differ from the expected ones.
    #[error("{0}")]
    Differs(String),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
    /// `status`: the queue was read, but needs a person (a damaged queue set aside).
    #[error("{0}")]
    Attention(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) => 3,
            CliError::Usage(_) => 2,
            CliError::BadInput(_) => 4,
            CliError::Differs(_) => 5,
            CliError::Outbox(_) | CliError::Other(_) => 1,
            CliError::Attention(_) => 5,
        }
    }
}

/// Parses `args` and runs the command; the single place that turns errors into
/// a message on stderr and an exit code.
pub fn main_with(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tillrelay: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Run => {
            let (cfg, note) = crate::pull::load_with_note(&cli.config)?;
            crate::logging::init(cfg.agent.log_level);
            if let Some(n) = note {
                log::warn!("config pull: {n}");
            }
            crate::daemon::run(cfg).map_err(CliError::Other)
        }
        Command::ConfigFile(ConfigCommand::Keygen { out }) => config_cmd::keygen(&out),
        Command::ConfigFile(ConfigCommand::Sign { key, serial, file }) => {
            config_cmd::sign(&key, serial, &file)
        }
        Command::CheckConfig { online, json } => check_config(&cli.config, online, json),
        Command::Generate { what, dir } => match what.as_str() {
            "man" => crate::generate::man_pages(&dir),
            _ => crate::generate::completions(&dir),
        }
        .map_err(CliError::Other),
        Command::Retry { dest, order } => retry(
            &crate::pull::load_effective(&cli.config)?,
            dest.as_deref(),
            order.as_deref(),
        ),
        Command::Flush => flush(&crate::pull::load_effective(&cli.config)?).map(|_| ()),
        Command::Reload => crate::reload::command(&cli.config),
        Command::Record {
            source,
            out,
            seconds,
        } => {
            let cfg = crate::pull::load_effective(&cli.config)?;
            crate::logging::init(log::LevelFilter::Warn);
            let src = source_named(&cfg, &source)?;
            crate::record::record(src, &out, seconds).map_err(CliError::Other)
        }
        Command::Reparse { source, ids } => {
            let cfg = crate::pull::load_effective(&cli.config)?;
            if let Some(s) = &source {
                source_named(&cfg, s)?;
            }
            let r = crate::reparse::reparse(&cfg, source.as_deref(), &ids)?;
            println!(
                "{} journal entr{} read again: {} new order(s), {} already stored, {} still not readable",
                r.entries,
                if r.entries == 1 { "y" } else { "ies" },
                r.orders,
                r.duplicates,
                r.still_unparsed
            );
            if r.orders > 0 && !flush(&cfg)? {
                println!("the agent is not running: the new orders go out when it starts");
            }
            Ok(())
        }
        Command::Emulate { listen, emu_config } => {
            crate::logging::init(log::LevelFilter::Info);
            crate::emulator::run_cli(&listen, emu_config.as_deref()).map_err(CliError::Other)
        }
        Command::Demo => crate::demo::run().map_err(CliError::Other),
        Command::Status { json } => match crate::pull::load_effective(&cli.config) {
            Ok(cfg) => status(&cfg, json),
            Err(e) => {
                crate::reload::refused_note(&cli.config, human_age);
                Err(e.into())
            }
        },
        Command::Orders {
            json,
            state,
            source,
            limit,
        } => {
            let cfg = crate::pull::load_effective(&cli.config)?;
            let state = state.as_deref().map(|s| match s {
                "delivered" => DeliveryState::Delivered,
                "rejected" => DeliveryState::Rejected,
                "quarantined" => DeliveryState::Quarantined,
                _ => DeliveryState::Pending,
            });
            orders(&cfg, json, state, source.as_deref(), limit)
        }
        Command::Parse {
            file,
            source,
            json,
            stamp,
            text,
            expect,
            captured_at,
        } => parse(
            &crate::pull::load_effective(&cli.config)?,
            &file,
            &source,
            parse::Options {
                json,
                stamp,
                text,
                expect: expect.as_deref(),
                captured_at,
            },
        ),
    }
}

/// `parse --captured-at`: a local time as orders write it.
fn captured_at(s: &str) -> Result<chrono::NaiveDateTime, String> {
    crate::order::parse_time(s.trim())
        .map_err(|e| format!("{s:?} is not a local time as YYYY-MM-DD HH:MM:SS: {e}"))
}

fn check_config(path: &std::path::Path, online: bool, json: bool) -> Result<(), CliError> {
    let cfg = Config::load(path)?;
    let mut out = std::io::stdout().lock();
    if json {
        let v = cfg.to_json().map_err(|e| anyhow::anyhow!(e))?;
        print_json(&mut out, &v)?;
    } else {
        // The first line is a comment, so that the output is a config file itself.
        let text = cfg.to_toml().map_err(|e| anyhow::anyhow!(e))?;
        let _ = writeln!(
            out,
            "# {} is valid. Effective configuration (defaults filled in, secrets as ***):\n",
            path.display()
        );
        let _ = write!(out, "{text}");
    }
    for w in cfg.warnings() {
        eprintln!("warning: {w}");
    }
    if !online {
        return Ok(());
    }
    let _ = writeln!(out, "\nonline checks:");
    let mut failed = Vec::new();
    let mut check = |name: &str, r: Result<String, String>| match r {
        Ok(msg) => {
            let _ = writeln!(out, "  {name}: ok: {msg}");
        }
        Err(msg) => {
            let _ = writeln!(out, "  {name}: FAILED: {msg}");
            failed.push(name.to_string());
        }
    };
    // One line per destination (account, key), then one per (destination, source).
    for (name, c) in crate::upload::clients(cfg.ovopark.as_ref(), cfg.wdt.as_ref(), &cfg.routes) {
        match c {
            Err(e) => check(name, Err(e)),
            Ok(c) => {
                for each in c.online_checks() {
                    match &each.source {
                        None => check(name, each.result),
                        Some(s) => check(&format!("{name} / source {s}"), each.result),
                    }
                }
            }
        }
    }
    if cfg.ovopark.is_none() && cfg.wdt.is_none() {
        let _ = writeln!(out, "  no destination is enabled");
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Other(anyhow::anyhow!(
            "online check failed for {}",
            failed.join(", ")
        )))
    }
}

fn retry(cfg: &Config, dest: Option<&str>, order: Option<&str>) -> Result<(), CliError> {
    if let Some(d) = dest {
        if !cfg.destinations.iter().any(|x| x == d) {
            return Err(CliError::Usage(format!(
                "--dest {d:?} is not an enabled destination (enabled: {})",
                cfg.destinations.join(", ")
            )));
        }
    }
    let mut ob = Outbox::open(&cfg.db_path(), &cfg.outbox, &cfg.destinations)?;
    let n = ob.retry_rejected(dest, order)?;
    println!(
        "{n} rejected deliver{} put back in the queue",
        if n == 1 { "y" } else { "ies" }
    );
    if n > 0 && !flush(cfg)? {
        println!("the agent is not running: they go out when it starts");
    }
    Ok(())
}

/// Sends SIGUSR1 to the running agent; false if none runs. Only a process holding
/// the pid file's lock is signalled (crate::pidfile): a file left by a dead agent
/// may name an unrelated process, which SIGUSR1 would end.
fn flush(cfg: &Config) -> Result<bool, CliError> {
    use crate::pidfile::{Holder, holder};
    let pid_file = cfg.agent.state_dir.join(crate::pidfile::FILE);
    let pid = match holder(&pid_file) {
        Ok(Holder::Running(pid)) => pid,
        Ok(Holder::Missing) => {
            eprintln!("no running agent ({} is missing)", pid_file.display());
            return Ok(false);
        }
        Ok(Holder::Stale(_)) => {
            eprintln!(
                "no running agent ({} is left from an agent that is no longer running)",
                pid_file.display()
            );
            return Ok(false);
        }
        Err(e) => {
            return Err(CliError::Other(anyhow::anyhow!(
                "cannot read {}: {e}",
                pid_file.display()
            )));
        }
    };
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, libc::SIGUSR1) } != 0 {
        let e = std::io::Error::last_os_error();
        eprintln!("cannot signal the agent (pid {pid}): {e}");
        return Ok(false);
    }
    println!("asked the agent (pid {pid}) to send what is pending now");
    Ok(true)
}

fn orders(
    cfg: &Config,
    json: bool,
    state: Option<DeliveryState>,
    source: Option<&str>,
    limit: usize,
) -> Result<(), CliError> {
    let ob = Outbox::open_read_only(&cfg.db_path())?;
    let list = ob.orders(state, source, limit)?;
    let mut out = std::io::stdout().lock();
    if json {
        return print_json(&mut out, &list);
    }
    if list.is_empty() {
        let _ = writeln!(out, "no orders");
        return Ok(());
    }
    for o in &list {
        let s = |k: &str| o.order[k].as_str().unwrap_or("").to_string();
        let deliveries: Vec<String> = o
            .deliveries
            .iter()
            .map(|d| {
                let mut t = format!("{} {}", d.dest, d.state.as_str());
                if d.state != DeliveryState::Delivered {
                    if let Some(e) = &d.last_error {
                        t.push_str(&format!(" ({e})"));
                    }
                }
                t
            })
            .collect();
        let _ = writeln!(
            out,
            "{:<10} {:<20} {} {:<6} paid {:>9}  {} line(s)  {}",
            s("source"),
            s("order_no"),
            s("order_time"),
            s("kind"),
            s("paid"),
            o.order["lines"].as_array().map_or(0, |l| l.len()),
            deliveries.join(", ")
        );
        if let Some(d) = o.order["damaged"].as_str() {
            let _ = writeln!(out, "    {d}");
        }
    }
    Ok(())
}

/// Writes `v` as pretty JSON and a newline: every command's `--json` output. A
/// closed stdout (a pipe into `head`) is not an error.
fn print_json(out: &mut impl Write, v: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(v).map_err(anyhow::Error::from)?;
    let _ = writeln!(out, "{text}");
    Ok(())
}

fn source_named<'a>(cfg: &'a Config, name: &str) -> Result<&'a crate::config::Source, CliError> {
    cfg.source(name).ok_or_else(|| {
        CliError::Usage(format!(
            "no source named {name:?} in {} (sources: {})",
            cfg.path.display(),
            cfg.sources
                .iter()
                .map(|s| s.identity.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}
