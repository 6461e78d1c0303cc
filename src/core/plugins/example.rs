//! The `example` plug-in (Interlock 0.3's): logs every event it receives, and does nothing else.
//! It shows that events reach plug-ins, and the line each one gets:
//!
//! ```text
//! [example] action=received event=<event name> time=<unix nanoseconds>
//! ```
//!
//! `event=` is [`PluginEvent::name`]: the Docker action (`create`, `start`, `die`, ...), or
//! `interlock-start` / `interlock-stop` / `interlock-pass`. The seed's run of 0.3.2 printed
//! `event=` empty for its first event, the synthetic start event (0.3.2 left its status unset);
//! interlock names it, as Interlock's own code calls it `interlock-start`. `time=` is the event's
//! time (for Docker events, the engine's), in nanoseconds since the Unix epoch, as in 0.3.

use tracing::info;

use super::{Handling, Plugin, PluginEvent};

pub const NAME: &str = "example";
/// The version Interlock 0.3's example plug-in reported.
pub const VERSION: &str = "0.1";

/// See the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Example;

impl Plugin for Example {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> &'static str {
        VERSION
    }

    fn handle<'a>(&'a self, event: &'a PluginEvent) -> Handling<'a> {
        info!("{}", line(event));
        Box::pin(async { Ok(()) })
    }
}

/// The line logged for `event`.
pub fn line(event: &PluginEvent) -> String {
    format!("[example] action=received event={} time={}", event.name(), event.time())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_has_the_seed_form() {
        let start = PluginEvent::Interlock { action: super::super::INTERLOCK_START, time: 1445217779076879776 };
        assert_eq!(line(&start), "[example] action=received event=interlock-start time=1445217779076879776");
        let docker = PluginEvent::Docker {
            kind: "container".into(),
            action: "start".into(),
            id: "c1".into(),
            name: Some("web".into()),
            time: 1445217780000000001,
        };
        assert_eq!(line(&docker), "[example] action=received event=start time=1445217780000000001");
    }
}
