//! The `carbon` plug-in (also accepted as `stats`, Interlock 0.3's name): interlock's own series,
//! sent to Carbon (Graphite) through a [`CarbonSink`] (the sink, its settings and the plaintext
//! protocol are [`crate::carbon`]'s, which `interlock agent` shares).
//!
//! Per Docker or interlock event `PREFIX.cluster.events 1` (0.3's series), and per pass of each
//! extension (`PluginEvent::Pass`)
//! `PREFIX.interlock.clusters.<extension>.{routes,backends,quarantined,pass_ms}` (the
//! extension's name through [`sanitize`]). Container statistics are not the core's job: a
//! manager's engine only knows its own containers, so `interlock agent` runs on every node and
//! sends them through its own sink. (`interlock start` as a plain process reads the engine it is
//! connected to with the agent's loop, over this plug-in's connection: [`Carbon::with_sink`].)

use super::{Handling, Plugin, PluginError, PluginEvent};
use crate::carbon::{CarbonSettings, CarbonSink, line, sanitize};

/// The plug-in's name, for `--plugin` and the TOML.
pub const NAME: &str = "carbon";
/// Interlock 0.3's name for it, accepted too.
pub const ALIAS: &str = "stats";
pub const VERSION: &str = "0.1";

/// The `carbon` plug-in: interlock's own series, sent to Carbon.
#[derive(Debug)]
pub struct Carbon {
    settings: CarbonSettings,
    sink: CarbonSink,
}

impl Carbon {
    /// Validates `settings` and starts the sink (on the current Tokio runtime).
    pub fn new(settings: CarbonSettings) -> Result<Carbon, PluginError> {
        settings.validate().map_err(|e| PluginError::NotConfigured { plugin: NAME, reason: e.to_string() })?;
        let sink = CarbonSink::spawn(&settings.address)
            .map_err(|e| PluginError::Failed { plugin: NAME, reason: e.to_string() })?;
        Ok(Carbon { settings, sink })
    }

    /// Validates `settings` and sends over `sink`, a connection to their address already open
    /// and shared (`interlock start` sends its engine's container statistics over it too).
    pub fn with_sink(settings: CarbonSettings, sink: CarbonSink) -> Result<Carbon, PluginError> {
        settings.validate().map_err(|e| PluginError::NotConfigured { plugin: NAME, reason: e.to_string() })?;
        Ok(Carbon { settings, sink })
    }

    pub fn settings(&self) -> &CarbonSettings {
        &self.settings
    }

    pub fn sink(&self) -> &CarbonSink {
        &self.sink
    }

    /// The lines an event becomes: `PREFIX.cluster.events 1` for a Docker or interlock event
    /// (0.3's series; interlock's `interlock-start`/`-stop` count, as they did in 0.3), the
    /// cluster's series for a pass (passes are not counted as events).
    pub fn lines(&self, event: &PluginEvent) -> Vec<String> {
        event_lines(&self.settings.prefix, event)
    }
}

/// See [`Carbon::lines`].
pub fn event_lines(prefix: &str, event: &PluginEvent) -> Vec<String> {
    let ts = u64::try_from(event.time() / 1_000_000_000).unwrap_or(u64::MAX);
    match event {
        PluginEvent::Docker { .. } | PluginEvent::Interlock { .. } => {
            vec![line(&format!("{prefix}.cluster.events"), 1, ts)]
        }
        PluginEvent::Pass { extension, routes, backends, quarantined, duration, .. } => {
            let base = format!("{prefix}.interlock.clusters.{}", sanitize(extension));
            vec![
                line(&format!("{base}.routes"), routes, ts),
                line(&format!("{base}.backends"), backends, ts),
                line(&format!("{base}.quarantined"), quarantined, ts),
                line(&format!("{base}.pass_ms"), format_args!("{:.3}", duration.as_secs_f64() * 1000.0), ts),
            ]
        }
    }
}

impl Plugin for Carbon {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> &'static str {
        VERSION
    }

    fn handle<'a>(&'a self, event: &'a PluginEvent) -> Handling<'a> {
        self.sink.send_all(self.lines(event));
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::*;
    use crate::carbon::tests::accept_lines;

    fn pass(extension: &str) -> PluginEvent {
        PluginEvent::Pass {
            extension: extension.into(),
            routes: 3,
            backends: 7,
            quarantined: 1,
            duration: Duration::from_micros(12_345),
            routes_changed: true,
            time: 1_700_000_000_999_999_999,
        }
    }

    #[test]
    fn events_and_passes_become_their_series() {
        let start = PluginEvent::Interlock { action: "interlock-start", time: 1_700_000_000_500_000_000 };
        assert_eq!(event_lines("docker.stats", &start), ["docker.stats.cluster.events 1 1700000000\n"]);
        let docker = PluginEvent::Docker {
            kind: "container".into(),
            action: "start".into(),
            id: "abc".into(),
            name: Some("web.1.x".into()),
            time: 1_700_000_001_000_000_000,
        };
        assert_eq!(event_lines("p", &docker), ["p.cluster.events 1 1700000001\n"]);
        assert_eq!(
            event_lines("p", &pass("us.east")),
            [
                "p.interlock.clusters.us_east.routes 3 1700000000\n",
                "p.interlock.clusters.us_east.backends 7 1700000000\n",
                "p.interlock.clusters.us_east.quarantined 1 1700000000\n",
                "p.interlock.clusters.us_east.pass_ms 12.345 1700000000\n",
            ]
        );
    }

    #[tokio::test]
    async fn the_plugin_sends_its_lines_over_one_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let settings = CarbonSettings {
            address: listener.local_addr().unwrap().to_string(),
            prefix: "t".into(),
            ..CarbonSettings::default()
        };
        let carbon = Carbon::new(settings).unwrap();
        assert_eq!((carbon.name(), carbon.version()), ("carbon", "0.1"));
        carbon.handle(&PluginEvent::Interlock { action: "interlock-start", time: 5_000_000_000 }).await.unwrap();
        carbon.handle(&pass("x")).await.unwrap();
        let (lines, _conn) = accept_lines(&listener, 5).await;
        assert_eq!(lines[0], "t.cluster.events 1 5\n");
        assert_eq!(lines[1], "t.interlock.clusters.x.routes 3 1700000000\n");
        assert_eq!(carbon.sink().stats().connections, 1);
        assert!(Carbon::new(CarbonSettings::default()).is_err(), "no address");
    }
}
