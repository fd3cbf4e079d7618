//! The process collector, under the standard names every Prometheus client library
//! uses (`process_*`, as client_golang's process collector writes them), so the
//! fleet's usual dashboards and rules apply: resident and virtual memory, CPU
//! seconds, open and maximum file descriptors, and the start time (a crash loop
//! shows as `changes(process_start_time_seconds[…])`). Read from `/proc` at scrape
//! time; nothing is kept between scrapes.

use super::expo::Expo;

pub fn write(e: &mut Expo) {
    let stat = Stat::read();
    if let Some(rss) = resident_bytes() {
        e.single(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            rss as f64,
        );
    }
    if let Some(vsize) = stat.as_ref().map(|s| s.vsize) {
        e.single(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            vsize as f64,
        );
    }
    if let Some(s) = &stat {
        e.single(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            s.cpu_ticks as f64 / clock_ticks(),
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        e.single(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            dir.count() as f64,
        );
    }
    if let Some(n) = max_fds() {
        e.single(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            n as f64,
        );
    }
    if let Some(t) = stat.as_ref().and_then(Stat::start_time) {
        e.single(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            t,
        );
    }
}

/// What `/proc/self/stat` tells.
struct Stat {
    /// utime + stime, clock ticks.
    cpu_ticks: u64,
    /// Clock ticks after boot when the process started.
    start_ticks: u64,
    vsize: u64,
}

impl Stat {
    fn read() -> Option<Stat> {
        parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
    }

    /// Unix seconds: the boot time (`btime` of `/proc/stat`) plus the start ticks.
    fn start_time(&self) -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let btime: u64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(btime as f64 + self.start_ticks as f64 / clock_ticks())
    }
}

fn parse_stat(stat: &str) -> Option<Stat> {
    // The command name (field 2) may hold spaces: count fields after its `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After `)`, field N of proc(5) is at N - 3: utime 14, stime 15, starttime 22, vsize 23.
    let n = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: n(11)? + n(12)?,
        start_ticks: n(19)?,
        vsize: n(20)?,
    })
}

/// Resident set size, bytes.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// utime + stime, seconds.
pub fn cpu_seconds() -> Option<f64> {
    Some(Stat::read()?.cpu_ticks as f64 / clock_ticks())
}

/// The soft limit on open files.
fn max_fds() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is handed, nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0;
    // rlim_t is 32-bit on armv7, 64-bit on x86-64: widened either way.
    #[allow(clippy::useless_conversion)]
    let n = u64::from(r.rlim_cur);
    (ok && r.rlim_cur != libc::RLIM_INFINITY).then_some(n)
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

fn clock_ticks() -> f64 {
    // SAFETY: as above.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 { n as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process_under_the_standard_names() {
        let rss = super::resident_bytes().expect("statm");
        assert!(rss > 100 * 1024, "{rss}");
        assert!(super::cpu_seconds().expect("stat") >= 0.0);
        let mut e = super::Expo::new();
        super::write(&mut e);
        let text = e.finish();
        for name in [
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_cpu_seconds_total ",
            "process_open_fds ",
            "process_max_fds ",
        ] {
            assert!(text.lines().any(|l| l.starts_with(name)), "{name}: {text}");
        }
        // Started in the last day (a test process), and not in the future.
        let start: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_start_time_seconds "))
            .expect("start time")
            .parse()
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "{start} {now}"
        );
    }

    #[test]
    fn a_command_name_with_spaces_and_parens_does_not_shift_the_fields() {
        let s = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 12345 67890 100";
        let st = super::parse_stat(s).unwrap();
        assert_eq!(
            (st.cpu_ticks, st.start_ticks, st.vsize),
            (300, 12345, 67890)
        );
    }
}
