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
//! - 5: `parse --expect`: the orders differ from the expected ones

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
        /// Receipts: also show each receipt's decoded text, with the line numbers
        /// template errors cite (for writing a template at the till).
        #[arg(long)]
        text: bool,
        /// Compare the orders with this JSON file (as `--json` prints them),
        /// field by field; exit 0 only when they are equal, 5 when they differ.
        #[arg(long, value_name = "EXPECTED.json")]
        expect: Option<PathBuf>,
    },
    /// Write the manual pages or shell completions (for packaging: cross/deb.sh).
    #[command(hide = true)]
    Generate {
        #[arg(value_parser = ["man", "completions"])]
        what: String,
        /// Directory to write into (created).
        dir: PathBuf,
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
            let cfg = Config::load(&cli.config)?;
            crate::logging::init(cfg.agent.log_level);
            crate::daemon::run(cfg).map_err(CliError::Other)
        }
        Command::CheckConfig { online, json } => check_config(&cli.config, online, json),
        Command::Generate { what, dir } => match what.as_str() {
            "man" => crate::generate::man_pages(&dir),
            _ => crate::generate::completions(&dir),
        }
        .map_err(CliError::Other),
        Command::Retry { dest, order } => retry(
            &Config::load(&cli.config)?,
            dest.as_deref(),
            order.as_deref(),
        ),
        Command::Flush => flush(&Config::load(&cli.config)?).map(|_| ()),
        Command::Reload => crate::reload::command(&cli.config),
        Command::Record {
            source,
            out,
            seconds,
        } => {
            let cfg = Config::load(&cli.config)?;
            crate::logging::init(log::LevelFilter::Warn);
            let src = source_named(&cfg, &source)?;
            crate::record::record(src, &out, seconds).map_err(CliError::Other)
        }
        Command::Reparse { source, ids } => {
            let cfg = Config::load(&cli.config)?;
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
        Command::Status { json } => match Config::load(&cli.config) {
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
            let cfg = Config::load(&cli.config)?;
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
        } => parse(
            &Config::load(&cli.config)?,
            &file,
            &source,
            json,
            stamp,
            text,
            expect.as_deref(),
        ),
    }
}

fn check_config(path: &std::path::Path, online: bool, json: bool) -> Result<(), CliError> {
    let cfg = Config::load(path)?;
    let mut out = std::io::stdout().lock();
    if json {
        let v = cfg.to_json().map_err(|e| anyhow::anyhow!(e))?;
        let text = serde_json::to_string_pretty(&v).map_err(anyhow::Error::from)?;
        let _ = writeln!(out, "{text}");
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

/// Sends SIGUSR1 to the running agent; false if none runs.
fn flush(cfg: &Config) -> Result<bool, CliError> {
    let pid_file = cfg.agent.state_dir.join(crate::daemon::PID_FILE);
    let pid: i32 = match std::fs::read_to_string(&pid_file) {
        Ok(s) => s.trim().parse().map_err(|_| {
            CliError::Other(anyhow::anyhow!(
                "{} does not hold a pid",
                pid_file.display()
            ))
        })?,
        Err(_) => {
            eprintln!("no running agent ({} is missing)", pid_file.display());
            return Ok(false);
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

fn status(cfg: &Config, json: bool) -> Result<(), CliError> {
    let db = cfg.db_path();
    let ob = match Outbox::open_read_only(&db) {
        Err(OutboxError::Missing(_)) => return Err(CliError::Other(no_queue(cfg))),
        r => r?,
    };
    let now = outbox::now();
    let mut st = ob.status(now)?;
    let damaged = db
        .parent()
        .zip(db.file_name())
        .map(|(dir, name)| outbox::damaged_files(dir, &name.to_string_lossy()))
        .unwrap_or_default();
    let attention = (!damaged.is_empty()).then(|| {
        format!(
            "a damaged queue was moved aside: {} (its orders can be recovered: see docs/INSTALL.md)",
            damaged
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    // The worker's real next attempt: the next scheduled row, or the probe it sends
    // `recheck` after a failed attempt while a backlog waits (upload::engine).
    let recheck = crate::upload::engine::EngineConfig::default()
        .recheck
        .as_secs() as i64;
    for d in &mut st.destinations {
        let failing_since = d.last_error_at.filter(|_| d.last_success_at.is_none());
        d.next_attempt_at = match (d.pending, d.next_due_at, failing_since) {
            (0, _, _) | (_, None, _) => None,
            (_, Some(due), Some(err)) => Some(due.min(err + recheck).max(now)),
            (_, Some(due), None) => Some(due.max(now)),
        };
    }
    let mut out = std::io::stdout().lock();
    // Live counters of network/device sources: the daemon's stats file.
    let live = crate::source_stats::read(&cfg.agent.state_dir);
    // The running agent's last configuration load (a refused reload shows here).
    let reload = crate::reload::read_live(&cfg.agent.state_dir);
    if json {
        let mut v = serde_json::to_value(&st).map_err(anyhow::Error::from)?;
        v["damaged_queues"] = serde_json::json!(damaged);
        if let serde_json::Value::Object(m) = &mut v {
            m.insert(
                "live".into(),
                serde_json::to_value(&live).map_err(anyhow::Error::from)?,
            );
            m.insert(
                "reload".into(),
                serde_json::to_value(&reload).map_err(anyhow::Error::from)?,
            );
        }
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&v).map_err(anyhow::Error::from)?
        );
        return attention.map_or(Ok(()), |a| Err(CliError::Attention(a)));
    }
    let _ = writeln!(
        out,
        "queue: {} ({})",
        cfg.db_path().display(),
        human_bytes(st.db_bytes)
    );
    for line in reload
        .iter()
        .flat_map(|r| crate::reload::status_lines(r, now, human_age))
    {
        let _ = writeln!(out, "{line}");
    }
    if let Some(since) = st.queue_full_since {
        let _ = writeln!(
            out,
            "  QUEUE FULL for {} (outbox.max_size {} or the disk): new captures wait; delivered \
             orders are deleted as they go out to make room",
            human_age((outbox::now() - since).max(0)),
            human_bytes(cfg.outbox.max_size)
        );
    }
    let _ = writeln!(out, "\nsources");
    for s in &cfg.sources {
        let c = st
            .sources
            .iter()
            .find(|x| x.name == s.identity.name)
            .cloned()
            .unwrap_or_default();
        let _ = match &s.kind {
            SourceKind::Folder(f) => writeln!(
                out,
                "  {} (folder {}): files seen {}, ingested {}, rejected {}; orders {}, duplicates {}",
                s.identity.name,
                f.path.display(),
                c.files_seen,
                c.files_ingested,
                c.files_rejected,
                c.orders,
                c.duplicates
            ),
            SourceKind::Serial(t) => writeln!(
                out,
                "  {} (serial {}): receipts {}, not parsed {}; orders {}, duplicates {}",
                s.identity.name,
                t.serial.pos.device.display(),
                c.receipts,
                c.unparsed,
                c.orders,
                c.duplicates
            ),
            SourceKind::Tcp(_) | SourceKind::Listen(_) | SourceKind::Device(_) => {
                let what = s
                    .stream_spec()
                    .map(|(x, _)| x.describe())
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {} ({what}): receipts {}, not parsed {}; orders {}, duplicates {}",
                    s.identity.name, c.receipts, c.unparsed, c.orders, c.duplicates
                );
                live_line(&mut out, &s.kind, live.as_ref(), &s.identity.name)
            }
        };
        if c.corrected > 0 {
            let _ = writeln!(
                out,
                "    {} rejected order(s) corrected by a later copy and sent again",
                c.corrected
            );
        }
        if c.unparsed > 0 {
            let _ = writeln!(
                out,
                "    {} receipt(s) kept unparsed: fix the template, then `tillrelay reparse --source {}`",
                c.unparsed, s.identity.name
            );
        }
        if c.conflicts > 0 {
            let _ = writeln!(
                out,
                "    {} order number(s) seen again with other content (conflicts kept aside: \
                 sqlite3 queue.db 'SELECT order_no, body FROM conflict')",
                c.conflicts
            );
        }
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
        if let (Some(at), None) = (d.next_attempt_at, &d.paused) {
            let when = match at - now {
                s if s <= 0 => "now".to_string(),
                s => format!("in {}", human_age(s)),
            };
            let _ = writeln!(out, "    next attempt: {when}");
        }
        if d.quarantined > 0 {
            let _ = writeln!(
                out,
                "    {} order(s) QUARANTINED: their stored row is damaged (`tillrelay orders --state quarantined`)",
                d.quarantined
            );
        }
        // An error followed by a success is over: not shown (kept in --json).
        if let (Some(e), None) = (&d.last_error, d.last_success_at) {
            let ago = d
                .last_error_at
                .map(|t| format!(" ({} ago)", human_age((now - t).max(0))))
                .unwrap_or_default();
            let _ = writeln!(out, "    last error{ago}: {e}");
        }
    }
    if let Some(a) = attention {
        return Err(CliError::Attention(a));
    }
    Ok(())
}

/// Why there is no queue to read: a state dir that cannot be written (a read-only
/// disk: the daemon forwards to the printer but cannot capture), or no daemon yet.
fn no_queue(cfg: &Config) -> anyhow::Error {
    let db = cfg.db_path();
    let dir = &cfg.agent.state_dir;
    let why = if dir.exists() && !dir.is_dir() {
        format!(
            "{} is not a directory: no queue can be created there; printing goes on, capture waits",
            dir.display()
        )
    } else if dir.is_dir() && !writable(dir) {
        format!(
            "{} cannot be written (a read-only disk?): no queue can be created there; printing goes on, capture waits",
            dir.display()
        )
    } else {
        "has the daemon run yet?".to_string()
    };
    anyhow::anyhow!("no queue database at {}: {why}", db.display())
}

fn writable(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) reads a NUL-terminated path and touches no other memory.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
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
        if let Some(d) = o.order["damaged"].as_str() {
            let _ = writeln!(out, "    {d}");
        }
    }
    Ok(())
}

fn parse(
    cfg: &Config,
    file: &std::path::Path,
    source: &str,
    json: bool,
    stamp: bool,
    text: bool,
    expect: Option<&std::path::Path>,
) -> Result<(), CliError> {
    let src = source_named(cfg, source)?;
    // Read first: a wrong path is reported before any work.
    let expected = expect
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .map_err(|e| CliError::BadInput(format!("cannot read {}: {e}", p.display())))?;
            serde_json::from_str::<serde_json::Value>(&text)
                .map_err(|e| CliError::BadInput(format!("{}: not JSON: {e}", p.display())))
        })
        .transpose()?;
    let bytes = std::fs::read(file)
        .map_err(|e| CliError::BadInput(format!("cannot read {}: {e}", file.display())))?;
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    // A receipt file was captured when it was last written: that places a
    // date printed without its year (docs/TEMPLATES.md §4).
    let captured = std::fs::metadata(file)
        .and_then(|m| m.modified())
        .ok()
        .map(|t| chrono::DateTime::<chrono::Local>::from(t).naive_local());
    let (parsed, rules) = match &src.kind {
        SourceKind::Folder(f) => match (formats::detect(f.format, name)
            == Some(crate::capture::formats::Format::Receipt))
        .then_some(f.receipt.as_ref())
        .flatten()
        {
            Some(rules) => (
                Ok(formats::read_receipts_at(&bytes, rules, captured)),
                Some(rules),
            ),
            None => (
                formats::read(&bytes, f.format, name, &f.csv, f.receipt.as_ref()),
                None,
            ),
        },
        SourceKind::Serial(t) => (
            Ok(formats::read_receipts_at(&bytes, &t.rules, captured)),
            Some(&t.rules),
        ),
        // A capture file of a network or device source is its raw stream, as for serial.
        SourceKind::Tcp(_) | SourceKind::Listen(_) | SourceKind::Device(_) => {
            let rules = src.receipt_rules().expect("stream sources read receipts");
            (
                Ok(formats::read_receipts_at(&bytes, rules, captured)),
                Some(rules),
            )
        }
    };
    let parsed = parsed.map_err(|e| CliError::BadInput(format!("{}: {e}", file.display())))?;
    if text {
        match rules {
            Some(rules) => {
                for (i, r) in crate::capture::receipt::split_bytes(&bytes, rules)
                    .iter()
                    .enumerate()
                {
                    eprintln!(
                        "── receipt {} (bytes {}..{}, ended by {:?}) ──\n{}",
                        i + 1,
                        r.stream_offset,
                        r.stream_offset + r.raw.len() as u64,
                        r.ended_by,
                        r.render_numbered()
                    );
                }
            }
            None => eprintln!(
                "(--text shows receipts; {} is not a receipt file)",
                file.display()
            ),
        }
    }
    let mut orders = parsed.orders;
    if stamp {
        for o in orders.iter_mut() {
            crate::stamp::stamp(o, &src.identity);
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
    if let (Some(expected), Some(path)) = (&expected, expect) {
        let got = serde_json::to_value(&orders).map_err(anyhow::Error::from)?;
        let diffs = crate::expect::differences(&got, expected);
        for d in &diffs {
            eprintln!("{}: {d}", path.display());
        }
        if !parsed.errors.is_empty() {
            // Unreadable receipts explain the missing orders: exit 4, as without --expect.
        } else if diffs.is_empty() {
            eprintln!("{}: every order as expected", path.display());
        } else {
            return Err(CliError::Differs(format!(
                "{}: {} difference(s) from {}",
                file.display(),
                diffs.len(),
                path.display()
            )));
        }
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

/// The live counters of a network/device source, from the daemon's stats file.
fn live_line(
    out: &mut impl Write,
    kind: &SourceKind,
    live: Option<&crate::source_stats::Snapshot>,
    name: &str,
) -> std::io::Result<()> {
    let Some((snap, c)) = live.and_then(|l| l.sources.get(name).map(|c| (l, c))) else {
        return writeln!(
            out,
            "    live counters: none (the agent has not run this source)"
        );
    };
    let age = (crate::outbox::now() - (snap.written_ms / 1000) as i64).max(0);
    let printer = match kind {
        SourceKind::Tcp(_) => format!(
            ", printer {}",
            if c.printer_reachable {
                "reachable"
            } else if c.printer_failures > 0 {
                "UNREACHABLE"
            } else {
                "not tried yet"
            }
        ),
        _ => String::new(),
    };
    let last = if c.last_receipt_ms == 0 {
        "none yet".to_string()
    } else {
        let secs = (crate::outbox::now() - (c.last_receipt_ms / 1000) as i64).max(0);
        format!("{} ago", human_age(secs))
    };
    writeln!(
        out,
        "    peers connected {} (of {} so far){printer}; bytes POS→printer {}, printer→POS {}; \
         refused peers {}; last receipt {last} (as of {} ago)",
        c.connected_peers,
        c.connections,
        human_bytes(c.bytes_to_printer.max(c.bytes_from_pos)),
        human_bytes(c.bytes_to_pos),
        c.refused_peers,
        human_age(age)
    )?;
    if c.capture_dropped_bytes > 0 {
        writeln!(
            out,
            "    {} forwarded but NOT captured (capture fell behind)",
            human_bytes(c.capture_dropped_bytes)
        )?;
    }
    Ok(())
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

pub(crate) fn human_age(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}
