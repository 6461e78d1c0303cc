//! What `interlock extension` and `interlock agent` do to the containers on their own node,
//! through that node's own engine (its Docker socket mounted into their task), because the Swarm
//! API cannot reach into a container: [`DockerClient`]'s implementation of
//! [`NodeEngine`](crate::engine::NodeEngine), the classification of [`DockerError`] into
//! [`EngineError`], the container labels Swarm sets, and [`tar`], the archive `write_files`
//! uploads.
//!
//! The requests themselves are [`DockerClient`] methods (`running_containers`, `write_files`,
//! `exec`, `signal`, `container_starts` in `client.rs`; `list_running_containers`,
//! `container_stats` in `stats.rs`; `container_image` in `own_container.rs`); the plain types
//! they answer in live beside the trait, in `crate::engine`.

use std::collections::BTreeSet;

use futures_util::{Stream, StreamExt};

use super::{DockerClient, DockerError};
use crate::engine::{ContainerStats, EngineError, ExecOutput, LocalContainer, NodeEngine, RunningContainer};

/// The container label Swarm sets to the name of the service a task container belongs to.
pub(super) const LABEL_SERVICE_NAME: &str = "com.docker.swarm.service.name";
/// The container label Swarm sets to the task's ID.
pub(super) const LABEL_TASK_ID: &str = "com.docker.swarm.task.id";
/// The container label Swarm sets to the ID of the node the task runs on.
pub(super) const LABEL_NODE_ID: &str = "com.docker.swarm.node.id";

/// Most output [`DockerClient::exec`](super::DockerClient::exec) keeps (its start).
pub(super) const EXEC_OUTPUT_CAP: usize = 64 * 1024;

impl NodeEngine for DockerClient {
    async fn node_name(&self) -> Result<String, EngineError> {
        Ok(self.engine().await?.name)
    }

    async fn running_containers(&self) -> Result<Vec<RunningContainer>, EngineError> {
        Ok(self.list_running_containers().await?)
    }

    async fn service_containers(&self, service: &str) -> Result<Vec<LocalContainer>, EngineError> {
        Ok(DockerClient::running_containers(self, service).await?)
    }

    async fn container_stats(&self, id: &str) -> Result<Option<ContainerStats>, EngineError> {
        Ok(DockerClient::container_stats(self, id).await?)
    }

    async fn exec(&self, container: &str, argv: &[String]) -> Result<ExecOutput, EngineError> {
        Ok(DockerClient::exec(self, container, argv).await?)
    }

    async fn write_files(&self, container: &str, files: &[(String, Vec<u8>)]) -> Result<(), EngineError> {
        Ok(DockerClient::write_files(self, container, files).await?)
    }

    async fn signal(&self, container: &str, signal: &str) -> Result<(), EngineError> {
        Ok(DockerClient::signal(self, container, signal).await?)
    }

    fn container_starts(&self, service: &str) -> impl Stream<Item = Result<String, EngineError>> + Send + 'static {
        DockerClient::container_starts(self, service).map(|item| item.map_err(EngineError::from))
    }

    async fn container_image(&self, id: &str) -> Result<Option<String>, EngineError> {
        Ok(DockerClient::container_image(self, id).await?)
    }
}

/// The adapter's words, whole; "not found" kept apart (a container gone since the list).
impl From<DockerError> for EngineError {
    fn from(e: DockerError) -> Self {
        match e {
            DockerError::NotFound { .. } => EngineError::NotFound(e.to_string()),
            e => EngineError::Failed(e.to_string()),
        }
    }
}

/// Appends `chunk` to `out` up to [`EXEC_OUTPUT_CAP`] bytes; the rest is dropped.
pub(super) fn keep_start(out: &mut Vec<u8>, chunk: &[u8]) {
    let room = EXEC_OUTPUT_CAP.saturating_sub(out.len());
    out.extend_from_slice(&chunk[..chunk.len().min(room)]);
}

/// Why a set of files cannot be put in a tar archive. Nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TarError {
    #[error("{path:?}: not an absolute path to a file")]
    NotAbsolute { path: String },
    #[error(
        "{path:?}: empty, `.` or `..` component, or a NUL byte (write plain absolute paths such as /etc/nginx/nginx.conf)"
    )]
    BadComponent { path: String },
    #[error(
        "{path:?}: too long for a ustar archive (a name of at most 100 bytes after a `/`, and at most 155 bytes before it)"
    )]
    TooLong { path: String },
    #[error("{path:?}: {size} bytes is beyond a ustar archive's 8 GiB per file")]
    TooLarge { path: String, size: u64 },
}

const BLOCK: usize = 512;
/// The largest size (or time) the 11 octal digits of a ustar size (or mtime) field hold.
const MAX_SIZE: u64 = 0o777_7777_7777;

/// A POSIX ustar archive of `files` (absolute paths and contents), extracted at `/`: entries
/// relative to `/`, a directory entry (mode 0755) for each parent directory before its first
/// file, files mode 0644, owner 0:0, modification time `mtime` (Unix seconds), and the two zero
/// blocks that end an archive.
///
/// Extracting over an existing directory sets its mode, owner and time from its entry (Docker's
/// archive API does), so the files belong in directories where 0755 root:root is right.
pub(super) fn tar(files: &[(String, Vec<u8>)], mtime: u64) -> Result<Vec<u8>, TarError> {
    let mut out = Vec::new();
    let mut dirs = BTreeSet::new();
    for (path, data) in files {
        let relative = relative_path(path)?;
        let size = data.len() as u64;
        if size > MAX_SIZE {
            return Err(TarError::TooLarge { path: path.clone(), size });
        }
        // Every parent, outermost first.
        for (i, _) in relative.match_indices('/') {
            let dir = &relative[..=i];
            if dirs.insert(dir.to_owned()) {
                out.extend_from_slice(&header(path, dir, b'5', 0o755, 0, mtime)?);
            }
        }
        out.extend_from_slice(&header(path, relative, b'0', 0o644, size, mtime)?);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(BLOCK), 0);
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    Ok(out)
}

/// `path` without its leading `/`, if it is a plain absolute path to a file.
fn relative_path(path: &str) -> Result<&str, TarError> {
    let relative = path.strip_prefix('/').ok_or_else(|| TarError::NotAbsolute { path: path.to_owned() })?;
    if relative.is_empty() || relative.ends_with('/') {
        return Err(TarError::NotAbsolute { path: path.to_owned() });
    }
    if relative.contains('\0') || relative.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(TarError::BadComponent { path: path.to_owned() });
    }
    Ok(relative)
}

/// One ustar header block for `name` (a directory's ends with `/`); `path` names the file
/// being written, for errors.
fn header(path: &str, name: &str, typeflag: u8, mode: u32, size: u64, mtime: u64) -> Result<[u8; BLOCK], TarError> {
    let (prefix, name) = split_name(name).ok_or_else(|| TarError::TooLong { path: path.to_owned() })?;
    let mut h = [0u8; BLOCK];
    h[0..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0); // uid
    octal(&mut h[116..124], 0); // gid
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime.min(MAX_SIZE));
    h[148..156].fill(b' '); // the checksum counts its own field as spaces
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root"); // uname
    h[297..301].copy_from_slice(b"root"); // gname
    octal(&mut h[329..337], 0); // devmajor
    octal(&mut h[337..345], 0); // devminor
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    // Six octal digits, a NUL and a space: the form tar itself writes.
    h[148..154].copy_from_slice(format!("{sum:06o}").as_bytes());
    h[154] = 0;
    h[155] = b' ';
    Ok(h)
}

/// `(prefix, name)` for a ustar header: the whole `name` when it fits in 100 bytes, else split
/// at a `/` (which neither part keeps) with the name at most 100 bytes and the prefix at most 155;
/// `None` when no split fits.
fn split_name(name: &str) -> Option<(&str, &str)> {
    if name.len() <= 100 {
        return Some(("", name));
    }
    // The first `/` after which the rest fits gives the shortest prefix; a directory's trailing
    // `/` is not a place to split (it would leave an empty name).
    let (i, _) = name[..name.len() - 1].match_indices('/').find(|(i, _)| name.len() - i - 1 <= 100)?;
    (i <= 155).then(|| (&name[..i], &name[i + 1..]))
}

/// `value` in octal, zero-padded to fill `field` but its last byte, which is NUL. Callers keep
/// values within the field (sizes are checked against [`MAX_SIZE`], times capped at it).
fn octal(field: &mut [u8], value: u64) {
    let digits = format!("{value:0width$o}", width = field.len() - 1);
    let digits = &digits.as_bytes()[digits.len() - (field.len() - 1)..];
    field[..digits.len()].copy_from_slice(digits);
    field[digits.len()] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(h: &[u8], range: std::ops::Range<usize>) -> &str {
        std::str::from_utf8(&h[range]).unwrap().trim_end_matches('\0')
    }

    fn checksum_ok(h: &[u8]) -> bool {
        let stored = u32::from_str_radix(field(h, 148..154), 8).unwrap();
        let mut blank = h.to_vec();
        blank[148..156].fill(b' ');
        stored == blank.iter().map(|&b| u32::from(b)).sum::<u32>()
    }

    /// The header blocks of an archive: (offset, name with prefix, typeflag, size).
    fn entries(archive: &[u8]) -> Vec<(usize, String, u8, u64)> {
        let mut at = 0;
        let mut found = Vec::new();
        while archive[at..at + BLOCK].iter().any(|&b| b != 0) {
            let h = &archive[at..at + BLOCK];
            assert!(checksum_ok(h), "checksum of the header at {at}");
            let (prefix, name) = (field(h, 345..500), field(h, 0..100));
            let full = if prefix.is_empty() { name.to_owned() } else { format!("{prefix}/{name}") };
            let size = u64::from_str_radix(field(h, 124..136), 8).unwrap();
            found.push((at, full, h[156], size));
            at += BLOCK + (size as usize).next_multiple_of(BLOCK);
        }
        assert!(archive[at..].iter().all(|&b| b == 0), "only zero blocks after the last entry");
        assert_eq!(archive.len() - at, 2 * BLOCK, "two zero blocks end the archive");
        found
    }

    #[test]
    fn a_file_gets_its_parent_directories_a_checksummed_header_and_padding() {
        let archive = tar(&[("/etc/nginx/nginx.conf".to_owned(), b"events {}\n".to_vec())], 1_700_000_000).unwrap();
        assert_eq!(archive.len() % BLOCK, 0);
        let found = entries(&archive);
        let names: Vec<(&str, u8, u64)> = found.iter().map(|(_, n, t, s)| (n.as_str(), *t, *s)).collect();
        assert_eq!(names, [("etc/", b'5', 0), ("etc/nginx/", b'5', 0), ("etc/nginx/nginx.conf", b'0', 10)]);

        let file = &archive[2 * BLOCK..3 * BLOCK];
        assert_eq!(field(file, 100..108), "0000644");
        assert_eq!(field(file, 108..116), "0000000");
        assert_eq!(field(file, 124..136), "00000000012", "size 10 in 11 octal digits");
        assert_eq!(field(file, 136..148), format!("{:011o}", 1_700_000_000));
        assert_eq!(&file[257..265], b"ustar\x0000");
        assert_eq!((file[154], file[155]), (0, b' '), "checksum ends with NUL and space");
        assert_eq!(field(&archive[..BLOCK], 100..108), "0000755");
        // The content, then zeros to the block's end.
        assert_eq!(&archive[3 * BLOCK..3 * BLOCK + 10], b"events {}\n");
        assert!(archive[3 * BLOCK + 10..4 * BLOCK].iter().all(|&b| b == 0));
    }

    #[test]
    fn shared_parents_are_written_once_and_a_block_sized_file_gets_no_padding() {
        let files = [
            ("/etc/nginx/nginx.conf".to_owned(), vec![b'a'; BLOCK]),
            ("/etc/nginx/conf.d/extra.conf".to_owned(), vec![]),
            ("/etc/hosts.extra".to_owned(), vec![b'b'; BLOCK + 1]),
        ];
        let archive = tar(&files, 0).unwrap();
        let found = entries(&archive);
        let names: Vec<&str> = found.iter().map(|(_, n, ..)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/nginx/",
                "etc/nginx/nginx.conf",
                "etc/nginx/conf.d/",
                "etc/nginx/conf.d/extra.conf",
                "etc/hosts.extra"
            ]
        );
        let offsets: Vec<usize> = found.iter().map(|(at, ..)| *at / BLOCK).collect();
        // nginx.conf: header + 1 block; extra.conf: header only; hosts.extra: header + 2 blocks.
        assert_eq!(offsets, [0, 1, 2, 4, 5, 6]);
        assert_eq!(archive.len(), (6 + 1 + 2 + 2) * BLOCK);
    }

    #[test]
    fn a_long_path_is_split_into_prefix_and_name_at_a_slash() {
        let dir = format!("/{}/{}", "d".repeat(60), "e".repeat(60));
        let path = format!("{dir}/{}.conf", "f".repeat(80));
        let archive = tar(&[(path.clone(), b"x".to_vec())], 0).unwrap();
        let found = entries(&archive);
        assert_eq!(found.last().unwrap().1, path[1..]);
        let h = &archive[found.last().unwrap().0..];
        assert_eq!(field(h, 345..500), &dir[1..], "prefix: the directories");
        assert_eq!(field(h, 0..100), format!("{}.conf", "f".repeat(80)), "name: what fits after a slash");
        // The directory entry of 122 bytes is split too.
        let h = &archive[found[1].0..];
        assert_eq!((field(h, 345..500), field(h, 0..100)), (&dir[1..61], &*format!("{}/", "e".repeat(60))));
    }

    #[test]
    fn split_name_limits() {
        let name100 = "n".repeat(100);
        assert_eq!(split_name(&name100), Some(("", name100.as_str())));
        // A last component over 100 bytes cannot be stored.
        assert_eq!(split_name(&format!("a/{}", "n".repeat(101))), None);
        // The prefix may be 155 bytes, not 156.
        let p155 = "p".repeat(155);
        assert_eq!(split_name(&format!("{p155}/{name100}")), Some((p155.as_str(), name100.as_str())));
        assert_eq!(split_name(&format!("{}/{name100}", "p".repeat(156))), None);
        // A directory's trailing slash is never the split point.
        let dir = format!("{}/", "d".repeat(101));
        assert_eq!(split_name(&dir), None);
    }

    #[test]
    fn paths_that_cannot_be_written_are_refused_with_the_reason() {
        let one = |p: &str| tar(&[(p.to_owned(), vec![])], 0).unwrap_err();
        assert!(matches!(one("etc/nginx.conf"), TarError::NotAbsolute { .. }));
        assert!(matches!(one("/"), TarError::NotAbsolute { .. }));
        assert!(matches!(one("/etc/nginx/"), TarError::NotAbsolute { .. }));
        assert!(matches!(one("/etc//nginx.conf"), TarError::BadComponent { .. }));
        assert!(matches!(one("/etc/../root/x"), TarError::BadComponent { .. }));
        assert!(matches!(one("/etc/./x"), TarError::BadComponent { .. }));
        let long = format!("/{}/x", "p".repeat(200));
        let e = one(&long);
        assert_eq!(e, TarError::TooLong { path: long.clone() });
        assert!(e.to_string().contains("155 bytes"), "{e}");
    }

    #[test]
    fn exec_output_keeps_the_start() {
        let mut out = Vec::new();
        keep_start(&mut out, &vec![b'a'; EXEC_OUTPUT_CAP - 1]);
        keep_start(&mut out, b"bc");
        keep_start(&mut out, b"d");
        assert_eq!(out.len(), EXEC_OUTPUT_CAP);
        assert_eq!(out.last(), Some(&b'b'));
    }

    /// The system's tar reads the archive back (skipped where there is no tar).
    #[test]
    fn system_tar_lists_the_archive() {
        let long = format!("/srv/{}/{}.conf", "d".repeat(90), "f".repeat(90));
        let files = [("/etc/nginx/nginx.conf".to_owned(), b"events {}\n".to_vec()), (long.clone(), vec![b'z'; 700])];
        let archive = tar(&files, 1_700_000_000).unwrap();
        let path = std::env::temp_dir().join(format!("interlock-tar-test-{}.tar", std::process::id()));
        std::fs::write(&path, &archive).unwrap();
        let listed = std::process::Command::new("tar").arg("-tvf").arg(&path).output();
        std::fs::remove_file(&path).unwrap();
        let Ok(listed) = listed else {
            eprintln!("no tar on this system: skipped the system tar check");
            return;
        };
        let text = String::from_utf8_lossy(&listed.stdout);
        assert!(listed.status.success(), "tar -tvf: {}{text}", String::from_utf8_lossy(&listed.stderr));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(lines[0].starts_with("drwxr-xr-x root/root") && lines[0].ends_with(" etc/"), "{text}");
        assert!(lines[2].starts_with("-rw-r--r-- root/root") && lines[2].contains(" 10 "), "{text}");
        assert!(lines[2].ends_with(" etc/nginx/nginx.conf"), "{text}");
        assert!(lines[5].contains(" 700 ") && lines[5].ends_with(&long[1..]), "{text}");
    }
}
