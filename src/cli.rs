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

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::capture::formats;
use crate::config::{self, Config, ConfigError, SourceKind};
use crate::outbox::{self, DeliveryState, Outbox, OutboxError};

#[derive(Parser, Debug)]
#[command(
    name = "tillrelay",
    version,
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
        #[arg(long, value_parser = ["pending", "delivered", "rejected"])]
        state: Option<String>,
        /// Only orders of this source.
        #[arg(long)]
        source: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Validate the configuration and print it as the agent will use it (secrets as ***).
    CheckConfig,
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
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) => 3,
            CliError::Usage(_) => 2,
            CliError::BadInput(_) => 4,
            CliError::Outbox(_) | CliError::Other(_) => 1,
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
            let cfg = Config::load(&cli.config)?;
            crate::logging::init(cfg.agent.log_level);
            crate::daemon::run(cfg).map_err(CliError::Other)
        }
        Command::CheckConfig => check_config(&cli.config),
        Command::Status { json } => status(&Config::load(&cli.config)?, json),
        Command::Orders {
            json,
            state,
            source,
            limit,
        } => {
            let cfg = Config::load(&cli.config)?;
            let state = state.as_deref().map(|s| match s {
                "delivered" => DeliveryState::Delivered,
                "rejected" => DeliveryState::Rejected,
                _ => DeliveryState::Pending,
            });
            orders(&cfg, json, state, source.as_deref(), limit)
        }
        Command::Parse {
            file,
            source,
            json,
            stamp,
        } => parse(&Config::load(&cli.config)?, &file, &source, json, stamp),
    }
}

fn check_config(path: &std::path::Path) -> Result<(), CliError> {
    let cfg = Config::load(path)?;
    let mut out = std::io::stdout().lock();
    let text = serde_json::to_string_pretty(&cfg).map_err(anyhow::Error::from)?;
    let _ = writeln!(out, "{} is valid. Effective configuration:", path.display());
    let _ = writeln!(out, "{text}");
    Ok(())
}

fn status(cfg: &Config, json: bool) -> Result<(), CliError> {
    let ob = Outbox::open_read_only(&cfg.db_path())?;
    let st = ob.status(outbox::now())?;
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&st).map_err(anyhow::Error::from)?
        );
        return Ok(());
    }
    let _ = writeln!(
        out,
        "queue: {} ({})",
        cfg.db_path().display(),
        human_bytes(st.db_bytes)
    );
    let _ = writeln!(out, "\nsources");
    for s in &cfg.sources {
        let SourceKind::Folder(f) = &s.kind;
        let c = st
            .sources
            .iter()
            .find(|x| x.name == s.name)
            .cloned()
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {} (folder {}): files seen {}, ingested {}, rejected {}; orders {}, duplicates {}",
            s.name,
            f.path.display(),
            c.files_seen,
            c.files_ingested,
            c.files_rejected,
            c.orders,
            c.duplicates
        );
        if let Some(e) = &c.last_error {
            let _ = writeln!(out, "    last error: {}", e.replace('\n', "; "));
        }
    }
    for s in st.sources.iter().filter(|s| cfg.source(&s.name).is_none()) {
        let _ = writeln!(
            out,
            "  {} (no longer configured): orders {}",
            s.name, s.orders
        );
    }
    let _ = writeln!(out, "\ndestinations");
    if st.destinations.is_empty() && cfg.destinations.is_empty() {
        let _ = writeln!(out, "  none configured: orders are stored, not uploaded");
    }
    for name in &cfg.destinations {
        if !st.destinations.iter().any(|d| &d.name == name) {
            let _ = writeln!(out, "  {name}: nothing queued yet");
        }
    }
    for d in &st.destinations {
        let oldest = d
            .oldest_pending_age
            .map(|a| format!(" (oldest {})", human_age(a)))
            .unwrap_or_default();
        let state = match &d.paused {
            Some(r) => format!("  PAUSED: {r}"),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  {}: pending {}{}, delivered {}, rejected {}{}",
            d.name, d.pending, oldest, d.delivered, d.rejected, state
        );
        if let Some(e) = &d.last_error {
            let _ = writeln!(out, "    last error: {e}");
        }
    }
    Ok(())
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
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&list).map_err(anyhow::Error::from)?
        );
        return Ok(());
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
    }
    Ok(())
}

fn parse(
    cfg: &Config,
    file: &std::path::Path,
    source: &str,
    json: bool,
    stamp: bool,
) -> Result<(), CliError> {
    let src = cfg.source(source).ok_or_else(|| {
        CliError::Usage(format!(
            "no source named {source:?} in {} (sources: {})",
            cfg.path.display(),
            cfg.sources
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let bytes = std::fs::read(file)
        .map_err(|e| CliError::BadInput(format!("cannot read {}: {e}", file.display())))?;
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let SourceKind::Folder(f) = &src.kind;
    let parsed = formats::read(&bytes, f.format, name, &f.csv)
        .map_err(|e| CliError::BadInput(format!("{}: {e}", file.display())))?;
    let mut orders = parsed.orders;
    if stamp {
        for o in orders.iter_mut() {
            crate::stamp::stamp(o, src);
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&orders).map_err(anyhow::Error::from)?
        );
    } else {
        for o in &orders {
            let _ = writeln!(
                out,
                "{} {} {} {} paid {} ({} line(s))",
                o.order_no,
                crate::order::format_time(&o.order_time),
                o.kind.as_str(),
                o.cashier.as_deref().unwrap_or("-"),
                o.paid,
                o.lines.len()
            );
            for l in &o.lines {
                let _ = writeln!(
                    out,
                    "    {} {} × {} @ {} = {}",
                    l.code, l.name, l.qty, l.price, l.amount
                );
            }
        }
        let _ = writeln!(out, "{} order(s)", orders.len());
    }
    for w in &parsed.warnings {
        eprintln!("{}: warning: {w}", file.display());
    }
    for e in &parsed.errors {
        eprintln!("{}: {e}", file.display());
    }
    if parsed.errors.is_empty() {
        Ok(())
    } else {
        Err(CliError::BadInput(format!(
            "{}: {} order(s) could not be read",
            file.display(),
            parsed.errors.len()
        )))
    }
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

fn human_age(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}
