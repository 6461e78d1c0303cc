//! `docker service create` argument lists, built one way for every test that creates a service
//! with the docker CLI (the main lab's and the HA lab's).
//!
//! The options come out in the order they are added (the walk-through's commands keep the
//! document's order, word for word), then the image, then its command and arguments:
//!
//! ```ignore
//! service::Create::new()
//!     .detach()
//!     .quiet()
//!     .name("web")
//!     .network("edge-apps")
//!     .constraint("node.hostname==app-00")
//!     .label("com.docker.lb.hosts", "web.local")
//!     .image("local/interlock-app:lab")
//!     .run_with(docker);
//! ```

/// One `docker service create` command line (without `docker`), option by option.
#[derive(Debug, Clone, Default)]
pub struct Create {
    options: Vec<String>,
    image: Option<String>,
    command: Vec<String>,
}

impl Create {
    /// `service create`, with no option yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One option word as written, such as `--detach=true`.
    pub fn option(mut self, word: &str) -> Self {
        self.options.push(word.to_owned());
        self
    }

    /// An option and its value: `FLAG VALUE`.
    fn flag(mut self, flag: &str, value: impl Into<String>) -> Self {
        self.options.extend([flag.to_owned(), value.into()]);
        self
    }

    /// `--detach`: return once the service is created, without waiting for its tasks.
    pub fn detach(self) -> Self {
        self.option("--detach")
    }

    /// `--quiet`: only the service's ID on stdout.
    pub fn quiet(self) -> Self {
        self.option("--quiet")
    }

    /// `--no-resolve-image`: the lab's images are local; asking a registry for their digest only
    /// waits for a timeout.
    pub fn no_resolve_image(self) -> Self {
        self.option("--no-resolve-image")
    }

    /// `--name NAME`.
    pub fn name(self, name: &str) -> Self {
        self.flag("--name", name)
    }

    /// `--network NETWORK`.
    pub fn network(self, network: &str) -> Self {
        self.flag("--network", network)
    }

    /// `--constraint CONSTRAINT`, e.g. `node.hostname==app-00`.
    pub fn constraint(self, constraint: &str) -> Self {
        self.flag("--constraint", constraint)
    }

    /// `--label KEY=VALUE`: a service label (the routing labels `com.docker.lb.*`).
    pub fn label(self, key: &str, value: &str) -> Self {
        self.flag("--label", format!("{key}={value}"))
    }

    /// `--env KEY=VALUE`.
    pub fn env(self, key: &str, value: &str) -> Self {
        self.flag("--env", format!("{key}={value}"))
    }

    /// `--replicas N`.
    pub fn replicas(self, replicas: u32) -> Self {
        self.flag("--replicas", replicas.to_string())
    }

    /// `--mode MODE` (`global`).
    pub fn mode(self, mode: &str) -> Self {
        self.flag("--mode", mode)
    }

    /// `--endpoint-mode MODE` (`dnsrr`: the lab has no IPVS).
    pub fn endpoint_mode(self, mode: &str) -> Self {
        self.flag("--endpoint-mode", mode)
    }

    /// `--mount SPEC`, e.g. `type=bind,src=/var/run/docker.sock,dst=/var/run/docker.sock`.
    pub fn mount(self, spec: &str) -> Self {
        self.flag("--mount", spec)
    }

    /// `--config SPEC`: a config object's name, or `source=NAME,target=PATH[,mode=MODE]`.
    pub fn config(self, spec: &str) -> Self {
        self.flag("--config", spec)
    }

    /// `--secret NAME`.
    pub fn secret(self, name: &str) -> Self {
        self.flag("--secret", name)
    }

    /// `--stop-signal SIGNAL`.
    pub fn stop_signal(self, signal: &str) -> Self {
        self.flag("--stop-signal", signal)
    }

    /// `--restart-delay DURATION`.
    pub fn restart_delay(self, delay: &str) -> Self {
        self.flag("--restart-delay", delay)
    }

    /// The image, after every option.
    pub fn image(mut self, image: &str) -> Self {
        self.image = Some(image.to_owned());
        self
    }

    /// The command and its arguments, after the image.
    pub fn command(mut self, words: &[&str]) -> Self {
        self.command = words.iter().map(|w| (*w).to_owned()).collect();
        self
    }

    /// `service create OPTIONS IMAGE COMMAND`: the docker CLI's arguments.
    pub fn args(&self) -> Vec<String> {
        let image = self.image.as_ref().unwrap_or_else(|| panic!("docker service create without an image: {self:?}"));
        let mut args: Vec<String> = vec!["service".into(), "create".into()];
        args.extend(self.options.iter().cloned());
        args.push(image.clone());
        args.extend(self.command.iter().cloned());
        args
    }

    /// Runs the command with `docker`, a runner of docker CLI arguments (such as
    /// [`super::docker`], or `|args| ha::try_docker(node, args)`), and returns what it returns.
    pub fn run_with<T>(&self, docker: impl FnOnce(&[&str]) -> T) -> T {
        let args = self.args();
        docker(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }
}
