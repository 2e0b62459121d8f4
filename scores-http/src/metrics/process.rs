//! The standard `process_*` metrics, as Prometheus's own clients name and compute them
//! (client_golang's process collector): read from `/proc` at each scrape, on Linux only.

use prometheus_client::registry::Registry;

/// Adds the process metrics to `registry` where the platform has them.
pub(super) fn register(registry: &mut Registry) {
    #[cfg(target_os = "linux")]
    registry.register_collector(Box::new(linux::ProcessCollector::new()));
    #[cfg(not(target_os = "linux"))]
    let _ = registry;
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fmt;

    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::DescriptorEncoder;

    use super::super::{counter, gauge};

    /// The kernel's `USER_HZ`: `/proc` counts CPU time in hundredths of a second on every Linux
    /// architecture, whatever the kernel's internal tick.
    const TICKS_PER_SECOND: f64 = 100.0;

    #[derive(Debug)]
    pub(super) struct ProcessCollector {
        /// When the machine booted, in seconds since the Unix epoch (`btime` in `/proc/stat`).
        boot_time: Option<u64>,
    }

    impl ProcessCollector {
        pub(super) fn new() -> ProcessCollector {
            let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|stat| {
                stat.lines().find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
            });
            ProcessCollector { boot_time }
        }
    }

    /// The fields of `/proc/self/stat` this collector reports.
    #[derive(Debug, PartialEq)]
    pub(super) struct Stat {
        cpu_ticks: u64,
        threads: u64,
        start_ticks: u64,
        virtual_bytes: u64,
    }

    /// Parses `/proc/self/stat`. The second field (the command, in parentheses) may hold spaces
    /// and parentheses itself, so fields are counted from the last `)`.
    pub(super) fn parse_stat(stat: &str) -> Option<Stat> {
        let rest = &stat[stat.rfind(')')? + 1..];
        // `rest` starts at field 3 (state); proc(5) numbers fields from 1.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Stat {
            cpu_ticks: field(14)? + field(15)?,
            threads: field(20)?,
            start_ticks: field(22)?,
            virtual_bytes: field(23)?,
        })
    }

    /// The resident set size in bytes, from `/proc/self/status`'s `VmRSS` (in KiB).
    pub(super) fn parse_rss(status: &str) -> Option<u64> {
        let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
        let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kib * 1024)
    }

    /// The soft limit on open files, from `/proc/self/limits`.
    pub(super) fn parse_max_fds(limits: &str) -> Option<u64> {
        let line = limits.lines().find_map(|line| line.strip_prefix("Max open files"))?;
        line.split_whitespace().next()?.parse().ok()
    }

    impl Collector for ProcessCollector {
        fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
            let e = &mut encoder;
            let read = |path: &str| std::fs::read_to_string(path).ok();
            if let Some(stat) = read("/proc/self/stat").as_deref().and_then(parse_stat) {
                let cpu_seconds = stat.cpu_ticks as f64 / TICKS_PER_SECOND;
                let help = "Total user and system CPU time spent in seconds";
                counter(e, "process_cpu_seconds", help, cpu_seconds)?;
                let help = "Virtual memory size in bytes";
                gauge(e, "process_virtual_memory_bytes", help, stat.virtual_bytes)?;
                gauge(e, "process_threads", "Number of OS threads in the process", stat.threads)?;
                if let Some(boot_time) = self.boot_time {
                    let started = boot_time as f64 + stat.start_ticks as f64 / TICKS_PER_SECOND;
                    let help = "Start time of the process since unix epoch in seconds";
                    gauge(e, "process_start_time_seconds", help, started)?;
                }
            }
            if let Some(rss) = read("/proc/self/status").as_deref().and_then(parse_rss) {
                gauge(e, "process_resident_memory_bytes", "Resident memory size in bytes", rss)?;
            }
            if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
                // The directory's own descriptor, open while it is read, is counted too, as
                // client_golang counts it.
                let open = fds.count() as u64;
                gauge(e, "process_open_fds", "Number of open file descriptors", open)?;
            }
            if let Some(max) = read("/proc/self/limits").as_deref().and_then(parse_max_fds) {
                gauge(e, "process_max_fds", "Maximum number of open file descriptors", max)?;
            }
            Ok(())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn stat_fields_are_counted_from_the_last_parenthesis() {
            // A command name with a space and a parenthesis, then fields 3 to 24.
            let stat = "4242 (sc ores) x) S 1 4242 4242 0 -1 4194560 1 0 0 0 \
                        250 50 0 0 20 0 7 0 12345 987654 321";
            let expected =
                Stat { cpu_ticks: 300, threads: 7, start_ticks: 12345, virtual_bytes: 987654 };
            assert_eq!(parse_stat(stat), Some(expected));
            assert_eq!(parse_stat("4242 (truncated"), None);
            assert_eq!(parse_stat("4242 (scores) S 1 2"), None);
        }

        #[test]
        fn rss_and_the_open_file_limit_are_read_in_bytes_and_files() {
            assert_eq!(
                parse_rss("Name:\tscores\nVmRSS:\t   2048 kB\nThreads:\t3\n"),
                Some(2 << 20)
            );
            assert_eq!(parse_rss("Name:\tscores\n"), None);
            let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                          Max open files            20000                524288               files\n";
            assert_eq!(parse_max_fds(limits), Some(20000));
        }

        #[test]
        fn this_process_reports_itself() {
            let stat = std::fs::read_to_string("/proc/self/stat").expect("procfs");
            let stat = parse_stat(&stat).expect("parsed");
            assert!(stat.threads >= 1 && stat.virtual_bytes > 0, "{stat:?}");
            let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
            assert!(parse_rss(&status).is_some_and(|rss| rss > 0));
            assert!(ProcessCollector::new().boot_time.is_some());
        }
    }
}
