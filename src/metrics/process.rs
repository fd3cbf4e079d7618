//! The process collector: resident memory, CPU seconds and open file descriptors,
//! read from `/proc/self` at scrape time (nothing is kept between scrapes).

use super::expo::Expo;

pub fn write(e: &mut Expo) {
    if let Some(rss) = resident_bytes() {
        e.single(
            "tillrelay_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the agent (from /proc/self/statm).",
            rss as f64,
        );
    }
    if let Some(cpu) = cpu_seconds() {
        e.single(
            "tillrelay_process_cpu_seconds_total",
            "counter",
            "User and system CPU time the agent has used.",
            cpu,
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        e.single(
            "tillrelay_process_open_fds",
            "gauge",
            "Open file descriptors of the agent.",
            dir.count() as f64,
        );
    }
}

/// Resident set size, bytes.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// utime + stime, seconds.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count fields after its `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After `)`: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks())
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
    fn reads_this_process() {
        let rss = super::resident_bytes().expect("statm");
        assert!(rss > 100 * 1024, "{rss}");
        assert!(super::cpu_seconds().expect("stat") >= 0.0);
        let mut e = super::Expo::new();
        super::write(&mut e);
        let text = e.finish();
        assert!(text.contains("tillrelay_process_open_fds "), "{text}");
    }
}
