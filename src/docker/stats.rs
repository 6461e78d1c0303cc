//! Container statistics from this node's engine, for `interlock agent` (the per-node stats
//! agent, `crate::agent`): the running containers, and one reading of a container's counters
//! (`GET /containers/{id}/stats?stream=false&one-shot=true`), as the plain types of
//! `crate::engine` (the agent reaches them through [`NodeEngine`](crate::engine::NodeEngine)).
//!
//! A manager's engine only knows its own containers, so the agent runs on every node with that
//! node's Docker socket; these calls go to that engine. The counters are the engine's cumulative
//! ones, as Interlock 0.3's stats plug-in sent them (`docs/plugins.md`, "Plug-ins: carbon"): CPU
//! time in nanoseconds, memory in bytes, network totals summed over the container's interfaces.

use bollard::models::{ContainerStatsResponse, ContainerSummary};
use bollard::query_parameters::{ListContainersOptions, StatsOptions};
use futures_util::StreamExt;

use super::DockerClient;
use super::error::DockerError;
use super::node;
use crate::engine::{ContainerStats, NetworkTotals, RunningContainer};

/// Calls for the per-node stats agent, to the engine of the node it runs on.
impl DockerClient {
    /// Every running container on this engine.
    pub async fn list_running_containers(&self) -> Result<Vec<RunningContainer>, DockerError> {
        let options = ListContainersOptions { all: false, ..Default::default() };
        let containers = self.call_read("list running containers", self.docker.list_containers(Some(options))).await?;
        Ok(containers.into_iter().map(running_container).collect())
    }

    /// One reading of the container's counters (`stream=false`, `one-shot=true`: the engine does
    /// not wait a second for a previous CPU sample, which cumulative counters do not need).
    /// `None` when the engine sent no reading (the container stopped meanwhile).
    pub async fn container_stats(&self, id: &str) -> Result<Option<ContainerStats>, DockerError> {
        let operation = format!("read the stats of container {id}");
        let options = StatsOptions { stream: false, one_shot: true };
        let mut readings = self.docker.stats(id, Some(options));
        let reading = self.call_read(&operation, async move { readings.next().await.transpose() }).await?;
        Ok(reading.map(container_stats))
    }
}

/// A listed container as the agent sees it.
pub(super) fn running_container(c: ContainerSummary) -> RunningContainer {
    let name = c.names.unwrap_or_default().into_iter().next().unwrap_or_default();
    RunningContainer {
        name: name.strip_prefix('/').unwrap_or(&name).to_owned(),
        id: c.id.unwrap_or_default(),
        image: c.image.unwrap_or_default(),
        service: c.labels.as_ref().and_then(|l| l.get(node::LABEL_SERVICE_NAME)).cloned(),
        labels: c.labels.unwrap_or_default().into_iter().collect(),
    }
}

/// The counters of one stats answer; network counters summed over its interfaces.
pub(super) fn container_stats(r: ContainerStatsResponse) -> ContainerStats {
    let cpu = r.cpu_stats.and_then(|c| c.cpu_usage).unwrap_or_default();
    let memory = r.memory_stats.unwrap_or_default();
    let mut network = NetworkTotals::default();
    for n in r.networks.unwrap_or_default().values() {
        let add = |total: &mut u64, v: Option<u64>| *total = total.saturating_add(v.unwrap_or(0));
        add(&mut network.rx_bytes, n.rx_bytes);
        add(&mut network.rx_packets, n.rx_packets);
        add(&mut network.rx_errors, n.rx_errors);
        add(&mut network.rx_dropped, n.rx_dropped);
        add(&mut network.tx_bytes, n.tx_bytes);
        add(&mut network.tx_packets, n.tx_packets);
        add(&mut network.tx_errors, n.tx_errors);
        add(&mut network.tx_dropped, n.tx_dropped);
    }
    ContainerStats {
        cpu_total: cpu.total_usage.unwrap_or(0),
        cpu_kernel: cpu.usage_in_kernelmode.unwrap_or(0),
        cpu_user: cpu.usage_in_usermode.unwrap_or(0),
        memory_usage: memory.usage.unwrap_or(0),
        memory_max_usage: memory.max_usage.unwrap_or(0),
        memory_failcnt: memory.failcnt.unwrap_or(0),
        memory_limit: memory.limit.unwrap_or(0),
        network,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stats answer of Docker 20.10 on cgroup v1 (the lab's), trimmed: two interfaces.
    pub(crate) const SAMPLE: &str = r#"{
      "read": "2024-05-01T10:00:00.123456789Z",
      "preread": "0001-01-01T00:00:00Z",
      "pids_stats": {"current": 3},
      "blkio_stats": {"io_service_bytes_recursive": null, "io_serviced_recursive": null},
      "num_procs": 0,
      "storage_stats": {},
      "cpu_stats": {
        "cpu_usage": {"total_usage": 123456789, "percpu_usage": [100000000, 23456789],
                      "usage_in_kernelmode": 20000000, "usage_in_usermode": 90000000},
        "system_cpu_usage": 99999999999, "online_cpus": 2,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
      },
      "precpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                       "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
      "memory_stats": {"usage": 2097152, "max_usage": 4194304, "stats": {"cache": 4096, "rss": 1048576},
                       "failcnt": 2, "limit": 8388608},
      "name": "/app.1.xyz",
      "id": "abc",
      "networks": {
        "eth0": {"rx_bytes": 1000, "rx_packets": 10, "rx_errors": 1, "rx_dropped": 2,
                 "tx_bytes": 500, "tx_packets": 5, "tx_errors": 0, "tx_dropped": 3},
        "eth1": {"rx_bytes": 24, "rx_packets": 1, "rx_errors": 0, "rx_dropped": 0,
                 "tx_bytes": 6, "tx_packets": 2, "tx_errors": 4, "tx_dropped": 0}
      }
    }"#;

    pub(crate) fn sample() -> ContainerStats {
        container_stats(serde_json::from_str(SAMPLE).expect("bollard reads the sample"))
    }

    #[test]
    fn counters_come_from_the_answer_and_networks_are_summed() {
        let stats = sample();
        assert_eq!(
            stats,
            ContainerStats {
                cpu_total: 123456789,
                cpu_kernel: 20000000,
                cpu_user: 90000000,
                memory_usage: 2097152,
                memory_max_usage: 4194304,
                memory_failcnt: 2,
                memory_limit: 8388608,
                network: NetworkTotals {
                    rx_bytes: 1024,
                    rx_packets: 11,
                    rx_errors: 1,
                    rx_dropped: 2,
                    tx_bytes: 506,
                    tx_packets: 7,
                    tx_errors: 4,
                    tx_dropped: 3,
                },
            }
        );
        assert_eq!(stats.memory_percent(), 25.0);
    }

    #[test]
    fn a_stopped_containers_empty_answer_is_all_zero() {
        // What the engine sends for a container that stopped between the list and the read.
        let empty = r#"{"read":"0001-01-01T00:00:00Z","preread":"0001-01-01T00:00:00Z","pids_stats":{},
            "blkio_stats":{},"num_procs":0,"storage_stats":{},"cpu_stats":{"cpu_usage":{"total_usage":0},
            "throttling_data":{}},"precpu_stats":{"cpu_usage":{"total_usage":0},"throttling_data":{}},
            "memory_stats":{},"name":"/gone","id":"abc"}"#;
        let stats = container_stats(serde_json::from_str(empty).unwrap());
        assert_eq!(stats, ContainerStats::default());
        assert_eq!(stats.memory_percent(), 0.0);
    }

    #[test]
    fn a_listed_container_loses_the_leading_slash_of_its_name() {
        let summary: ContainerSummary = serde_json::from_str(
            r#"{"Id":"abc","Names":["/app.1.xyz"],"Image":"local/interlock-app:lab",
                "Labels":{"com.docker.swarm.service.name":"app"},"State":"running"}"#,
        )
        .unwrap();
        let c = running_container(summary);
        assert_eq!((c.id.as_str(), c.name.as_str(), c.image.as_str()), ("abc", "app.1.xyz", "local/interlock-app:lab"));
        assert_eq!(c.service.as_deref(), Some("app"));
        assert_eq!(c.labels.len(), 1);
    }
}
