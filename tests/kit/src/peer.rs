//! Node peers in `tests/peers`: started as child processes that print their addresses as
//! one JSON line on stdout before serving.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// Start `tests/peers/<script>` with `args`; the child and the JSON line it printed.
/// `None` when Node or the peers are missing outside CI (see [`crate::require`]).
pub fn start(script: &str, args: &[&str]) -> Option<(Child, Value)> {
    crate::require::node()?;
    let peers = crate::paths::workspace_root().join("tests/peers");
    let mut child = Command::new("node")
        .arg(peers.join(script))
        .args(args)
        .current_dir(&peers)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting tests/peers/{script}: {e}"));
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("reading {script}'s address: {e}"));
    let addresses: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{script} printed {line:?}: {e}"));
    Some((child, addresses))
}
