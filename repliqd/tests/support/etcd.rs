//! A real etcd on loopback for the election tests (Debian's `etcd-server`;
//! `.ci/install-etcd.sh`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use repliqd::election::backend::LeaseBackend;
use repliqd::election::etcd::EtcdBackend;

use super::free_port;

pub struct Etcd {
    child: Child,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn etcd_binary() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("etcd"))
            .find(|p| p.is_file())
    })
}

/// A single-member etcd on ephemeral loopback ports, or `None` (after saying why) if the binary
/// is absent.
pub fn start_etcd() -> Option<Etcd> {
    let Some(bin) = etcd_binary() else {
        eprintln!("SKIPPED: `etcd` is not installed (run .ci/install-etcd.sh)");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let endpoint = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new(bin)
        .args(["--name", "test", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &endpoint])
        .args(["--advertise-client-urls", &endpoint])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("test={peer_url}")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("etcd.log")).unwrap())
        .spawn()
        .unwrap();
    let etcd = Etcd {
        child,
        endpoint,
        _dir: dir,
    };
    // Ready once a client can read from it.
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = rt.block_on(async {
            let b = backend(&etcd);
            b.observe("probe").await.is_ok()
        });
        if ok {
            return Some(etcd);
        }
        assert!(Instant::now() < deadline, "etcd did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn backend(etcd: &Etcd) -> EtcdBackend {
    EtcdBackend::new(
        vec![etcd.endpoint.clone()],
        "repliq-test",
        Duration::from_secs(3),
        Duration::from_secs(2),
    )
}
