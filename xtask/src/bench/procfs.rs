//! What the bench reads from /proc: a process's CPU time (utime + stime of all its threads, from
//! /proc/PID/stat) and resident memory (VmRSS from /proc/PID/status), and the CPU time of the whole
//! machine (/proc/stat), to tell how much of it processes outside the bench took during a run.

use anyhow::{Context, Result};

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`, 100 on Linux).
pub(crate) fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// utime + stime of `pid`, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Result<u64> {
    stat_ticks(&pid.to_string(), &[14, 15])
}

/// utime + stime of this process and of its children already reaped (cutime + cstime), in ticks.
pub(crate) fn own_and_reaped_ticks() -> Result<u64> {
    stat_ticks("self", &[14, 15, 16, 17])
}

/// CPU time the whole machine spent busy (user, nice, system, irq, softirq, steal), in ticks.
pub(crate) fn machine_busy_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let cpu = stat.lines().next().context("/proc/stat")?;
    let fields: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    Ok([0, 1, 2, 5, 6, 7]
        .iter()
        .map(|i| fields.get(*i).copied().unwrap_or(0))
        .sum())
}

fn stat_ticks(pid: &str, wanted: &[usize]) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    let rest = stat.rsplit_once(')').context("/proc/PID/stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .context("short /proc/PID/stat")?
            .parse()
            .context("CPU time in /proc/PID/stat")
    };
    wanted.iter().map(|n| field(*n)).sum()
}

/// utime + stime of each thread of `pid` whose name starts with `prefix`, by thread name (from
/// /proc/PID/task/TID/stat): how the work spread over a proxy's workers.
pub(crate) fn thread_ticks(pid: u32, prefix: &str) -> Result<Vec<(String, u64)>> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let tid = task?.file_name().to_string_lossy().to_string();
        let path = format!("{pid}/task/{tid}");
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{path}/comm")) else {
            continue; // the thread ended
        };
        let comm = comm.trim();
        if comm.starts_with(prefix) {
            threads.push((comm.to_string(), stat_ticks(&path, &[14, 15])?));
        }
    }
    threads.sort();
    Ok(threads)
}

/// Resident set size of `pid`, in KiB.
pub(crate) fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

/// A UDP socket is bound on 127.0.0.1:`port` (from /proc/net/udp).
pub(crate) fn udp_bound(port: u16) -> bool {
    let wanted = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp").is_ok_and(|t| {
        t.lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .any(|local| local == wanted)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn our_own_process_has_cpu_time_and_memory() {
        let pid = std::process::id();
        assert!(super::cpu_ticks(pid).is_ok());
        assert!(super::rss_kib(pid).unwrap() > 0);
    }

    #[test]
    fn a_bound_udp_port_is_seen() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(super::udp_bound(socket.local_addr().unwrap().port()));
    }
}
