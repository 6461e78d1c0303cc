//! Interlock 0.3's command line without a lab: the seed's command line with Carina's sign-in
//! flags (Carina was shut down in 2017) gets a one-line error saying how to connect instead, and
//! exit 2. The seed's `interlock --plugin example start` against a Swarm: `tests/lab/plugins.rs`.

use std::process::Command;

#[test]
fn carinas_sign_in_gets_one_line_saying_how_to_connect() {
    // The seed's command line, word for word.
    for args in [
        &["--username", "me", "--api-key", "k", "--clustername", "boatie", "--plugin", "example", "start"][..],
        &["--api-key", "k", "-p", "example", "start"],
        &["-p", "example", "start", "--clustername", "boatie"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_interlock")).args(args).output().expect("run interlock");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        for needle in ["Carina", "shut down in 2017", "--swarm-url", "DOCKER_HOST"] {
            assert!(stderr.contains(needle), "{args:?}: {stderr:?} should mention {needle}");
        }
        assert!(output.stdout.is_empty());
    }
}
