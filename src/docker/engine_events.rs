//! Every event of an engine, of every type (containers, images, networks, volumes, services,
//! nodes, ...), as an [`EngineEvent`]: what Interlock 0.3 dispatched to its plug-ins, for
//! `interlock start` (the plug-ins see it as a `PluginEvent::Docker`). Unlike
//! [`DockerClient::events`] (swarm-scoped kinds, hints for the loop), nothing is filtered: a
//! plug-in decides what it cares about.

use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptions;
use futures_util::{Stream, StreamExt};

use super::DockerClient;
use super::error::DockerError;
use crate::swarm::EngineEvent;

impl DockerClient {
    /// All events from the moment of this call (the engine replays those between this call and
    /// the first poll, as for [`events`](Self::events)). The stream ends when the engine closes
    /// it and has no idle timeout: the caller resubscribes. Not counted.
    pub fn all_events(&self) -> impl Stream<Item = Result<EngineEvent, DockerError>> + Send + 'static + use<> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let since = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
        let options = EventsOptions { since: Some(since), until: None, filters: None };
        let endpoint = self.endpoint().to_owned();
        self.docker
            .events(Some(options))
            .map(move |item| item.map(engine_event).map_err(|e| DockerError::classify("watch events", &endpoint, e)))
    }
}

/// An engine event's type, action, actor ID and `name` attribute, and its time in nanoseconds
/// (`timeNano`, else `time` in seconds, else now).
fn engine_event(message: EventMessage) -> EngineEvent {
    let actor = message.actor.unwrap_or_default();
    let time = match (message.time_nano, message.time) {
        (Some(nanos), _) if nanos > 0 => nanos as u128,
        (_, Some(secs)) if secs > 0 => secs as u128 * 1_000_000_000,
        _ => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    };
    EngineEvent {
        kind: message.typ.map(|t| t.to_string()).unwrap_or_default(),
        action: message.action.unwrap_or_default(),
        id: actor.id.unwrap_or_default(),
        name: actor.attributes.and_then(|mut a| a.remove("name")),
        time,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bollard::models::{EventActor, EventMessageTypeEnum};

    use super::*;

    #[test]
    fn an_engine_event_keeps_its_type_action_actor_and_time() {
        let message = EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some("start".into()),
            actor: Some(EventActor {
                id: Some("c1".into()),
                attributes: Some(HashMap::from([("name".into(), "web.1.x".into()), ("image".into(), "nginx".into())])),
            }),
            time: Some(1_445_217_779),
            time_nano: Some(1_445_217_779_076_879_776),
            ..Default::default()
        };
        assert_eq!(
            engine_event(message),
            EngineEvent {
                kind: "container".into(),
                action: "start".into(),
                id: "c1".into(),
                name: Some("web.1.x".into()),
                time: 1_445_217_779_076_879_776,
            }
        );
        let seconds_only = EventMessage { time: Some(1_445_217_779), ..Default::default() };
        assert_eq!(engine_event(seconds_only).time, 1_445_217_779_000_000_000);
    }
}
