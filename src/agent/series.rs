//! Interlock 0.3's Carbon series (`docs/plugins.md`, "Plug-ins: carbon"): the lines of one
//! container reading, under `PREFIX.containers.nodes.<node>.<container>.`, and of one proxy
//! reading, under `PREFIX.proxies.<node>.<container>.`. Pure.

use super::proxies::ProxyReading;
use crate::carbon::{line, sanitize};
use crate::engine::ContainerStats;

/// 0.3's series for one container reading.
pub fn container_lines(prefix: &str, node: &str, container: &str, s: &ContainerStats, ts: u64) -> Vec<String> {
    let base = format!("{prefix}.containers.nodes.{}.{}", sanitize(node), sanitize(container));
    let n = &s.network;
    let counters: [(&str, u64); 15] = [
        ("cpu.totalUsage", s.cpu_total),
        ("cpu.usageInKernelmode", s.cpu_kernel),
        ("cpu.usageInUsermode", s.cpu_user),
        ("memory.usage", s.memory_usage),
        ("memory.maxUsage", s.memory_max_usage),
        ("memory.failcnt", s.memory_failcnt),
        ("memory.limit", s.memory_limit),
        ("network.rxBytes", n.rx_bytes),
        ("network.rxPackets", n.rx_packets),
        ("network.rxErrors", n.rx_errors),
        ("network.rxDropped", n.rx_dropped),
        ("network.txBytes", n.tx_bytes),
        ("network.txPackets", n.tx_packets),
        ("network.txErrors", n.tx_errors),
        ("network.txDropped", n.tx_dropped),
    ];
    let mut lines: Vec<String> = counters.iter().map(|(key, v)| line(&format!("{base}.{key}"), v, ts)).collect();
    lines.insert(7, line(&format!("{base}.memory.percent"), format_args!("{:.4}", s.memory_percent()), ts));
    lines
}

/// The series for one proxy reading.
pub fn proxy_lines(prefix: &str, node: &str, container: &str, r: &ProxyReading, ts: u64) -> Vec<String> {
    let base = format!("{prefix}.proxies.{}.{}", sanitize(node), sanitize(container));
    let mut lines =
        vec![line(&format!("{base}.requests"), r.requests, ts), line(&format!("{base}.active"), r.active, ts)];
    lines.extend(r.extra.iter().map(|(key, v)| line(&format!("{base}.{key}"), v, ts)));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stats_answer_becomes_0_3s_series() {
        let stats = crate::engine::ContainerStats {
            cpu_total: 123456789,
            cpu_kernel: 20000000,
            cpu_user: 90000000,
            memory_usage: 2097152,
            memory_max_usage: 4194304,
            memory_failcnt: 2,
            memory_limit: 8388608,
            network: crate::engine::NetworkTotals {
                rx_bytes: 1024,
                rx_packets: 11,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 506,
                tx_packets: 7,
                tx_errors: 4,
                tx_dropped: 3,
            },
        };
        let lines = container_lines("docker.stats", "app-00", "web.1.x2kq", &stats, 1_700_000_000);
        let b = "docker.stats.containers.nodes.app-00.web_1_x2kq";
        let want: Vec<String> = [
            "cpu.totalUsage 123456789",
            "cpu.usageInKernelmode 20000000",
            "cpu.usageInUsermode 90000000",
            "memory.usage 2097152",
            "memory.maxUsage 4194304",
            "memory.failcnt 2",
            "memory.limit 8388608",
            "memory.percent 25.0000",
            "network.rxBytes 1024",
            "network.rxPackets 11",
            "network.rxErrors 1",
            "network.rxDropped 2",
            "network.txBytes 506",
            "network.txPackets 7",
            "network.txErrors 4",
            "network.txDropped 3",
        ]
        .iter()
        .map(|kv| format!("{b}.{kv} 1700000000\n"))
        .collect();
        assert_eq!(lines, want);
        // A node name with odd characters is one component too.
        let lines = container_lines("p", "node.example com", "c", &stats, 1);
        assert!(lines[0].starts_with("p.containers.nodes.node_example_com.c.cpu.totalUsage "), "{}", lines[0]);
    }
}
