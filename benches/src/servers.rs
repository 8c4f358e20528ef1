//! Starts and stops the peer servers the harness needs, on ephemeral ports of 127.0.0.1 only.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server process; stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// The loopback port it listens on.
    pub port: u16,
    /// The server's version line, for the report.
    pub version: String,
    _dir: tempfile::TempDir,
}

/// Finds an executable on `PATH` or in the sbin directories Debian puts servers in.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

fn version(bin: &PathBuf, flag: &str) -> String {
    Command::new(bin)
        .arg(flag)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn wait_listening(child: &mut Child, port: u16, what: &str) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited at start-up ({status})"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "{what} did not listen on 127.0.0.1:{port} within 10 s"
    ))
}

/// Starts `redis-server` without persistence (no RDB snapshots, no AOF).
pub fn start_redis() -> Result<Server, String> {
    let bin = find_binary("redis-server")
        .ok_or("redis-server not found (Debian package `redis-server`)")?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_port().map_err(|e| e.to_string())?;
    let mut child = Command::new(&bin)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ])
        .args([
            "--logfile",
            "",
            "--loglevel",
            "warning",
            "--daemonize",
            "no",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start redis-server: {e}"))?;
    wait_listening(&mut child, port, "redis-server")?;
    Ok(Server {
        child,
        port,
        version: version(&bin, "--version"),
        _dir: dir,
    })
}

/// Starts `nats-server -js` with its JetStream store in a temporary directory.
pub fn start_nats() -> Result<Server, String> {
    let bin =
        find_binary("nats-server").ok_or("nats-server not found (Debian package `nats-server`)")?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_port().map_err(|e| e.to_string())?;
    let mut child = Command::new(&bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start nats-server: {e}"))?;
    wait_listening(&mut child, port, "nats-server")?;
    // The first bytes a NATS server sends are its INFO line.
    let mut info = [0u8; 4];
    if let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.read_exact(&mut info);
    }
    if &info != b"INFO" {
        return Err("nats-server did not greet with INFO".into());
    }
    Ok(Server {
        child,
        port,
        version: version(&bin, "--version"),
        _dir: dir,
    })
}

/// Starts `n` `nats-server -js` processes clustered on loopback (one route port each, every
/// node soliciting routes to the others), with JetStream stores in temporary directories, for
/// replicated streams. The caller waits for JetStream's cluster to elect a leader.
pub fn start_nats_cluster(n: usize) -> Result<Vec<Server>, String> {
    let bin =
        find_binary("nats-server").ok_or("nats-server not found (Debian package `nats-server`)")?;
    let ports = (0..n)
        .map(|_| Ok((free_port()?, free_port()?)))
        .collect::<std::io::Result<Vec<(u16, u16)>>>()
        .map_err(|e| e.to_string())?;
    let mut servers = Vec::with_capacity(n);
    for (i, &(port, route)) in ports.iter().enumerate() {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let routes = ports
            .iter()
            .filter(|&&(_, r)| r != route)
            .map(|(_, r)| format!("nats://127.0.0.1:{r}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut child = Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .args(["--server_name", &format!("bench-{i}")])
            .args(["--cluster_name", "bench"])
            .args(["--cluster", &format!("nats://127.0.0.1:{route}")])
            .args(["--routes", &routes])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start nats-server: {e}"))?;
        wait_listening(&mut child, port, "nats-server")?;
        servers.push(Server {
            child,
            port,
            version: version(&bin, "--version"),
            _dir: dir,
        });
    }
    Ok(servers)
}

impl Server {
    /// The server's process id (for its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain syscall on the pid of our own child, which we have not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
