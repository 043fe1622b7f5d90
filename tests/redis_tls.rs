//! `rediss://` with a password: a one-node Redis Cluster that speaks only
//! TLS and requires a password, started by this test with a certificate
//! authority of its own, passes the backend conformance checks; a wrong
//! password and an untrusted certificate are clear errors.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use wasqlite::KvStore;
use wasqlite::kv::RedisKv;

fn run(program: &str, args: &[&str], dir: &Path) {
    let out = Command::new(program).args(args).current_dir(dir).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A TLS-only, password-protected one-node cluster; shut down on drop.
struct TlsNode {
    dir: tempfile::TempDir,
    port: u16,
}

impl TlsNode {
    fn start() -> TlsNode {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        run("openssl", &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=wasqlite test CA"], d);
        run("openssl", &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=127.0.0.1"], d);
        run("openssl", &["x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "node.pem", "-days", "1", "-extfile", "ext.cnf"], d);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let port_text = port.to_string();
        run(
            "redis-server",
            &[
                "--port", "0", "--tls-port", &port_text, "--bind", "127.0.0.1", "--daemonize", "yes",
                "--tls-cert-file", "node.pem", "--tls-key-file", "node.key", "--tls-ca-cert-file", "ca.pem",
                "--tls-auth-clients", "no", "--tls-cluster", "yes", "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf", "--requirepass", "s3cret", "--save", "",
                "--dir", d.to_str().unwrap(), "--logfile", "redis.log", "--pidfile", "redis.pid",
            ],
            d,
        );
        let node = TlsNode { dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.cli(&["ping"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "the TLS node did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        node.cli(&["cluster", "addslotsrange", "0", "16383"]);
        while !node.cli(&["cluster", "info"]).contains("cluster_state:ok") {
            assert!(Instant::now() < deadline, "the TLS node's cluster did not become ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    fn cli(&self, args: &[&str]) -> String {
        let ca = self.dir.path().join("ca.pem");
        let out = Command::new("redis-cli")
            .args(["--tls", "--cacert", ca.to_str().unwrap(), "-p", &self.port.to_string(), "-a", "s3cret", "--no-auth-warning"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn url(&self, password: &str, ca: &Path) -> String {
        format!("rediss://:{password}@127.0.0.1:{}?ca={}&timeout_ms=3000", self.port, ca.display())
    }
}

impl Drop for TlsNode {
    fn drop(&mut self) {
        self.cli(&["shutdown", "nosave"]);
    }
}

#[tokio::test]
async fn a_tls_cluster_with_a_password_keeps_the_contract() {
    if Command::new("redis-server").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must run the Redis tests: install redis-server");
        eprintln!("redis-server is not installed: skipping");
        return;
    }
    let node = TlsNode::start();
    let ca = node.dir.path().join("ca.pem");
    let kv = RedisKv::open(&node.url("s3cret", &ca)).unwrap();
    wasqlite::kv::conformance::check_all(&kv, "tls").await.unwrap();

    let wrong = RedisKv::open(&node.url("wrong", &ca)).unwrap();
    let err = wrong.list_actors().await.unwrap_err().to_string();
    assert!(err.contains("Password authentication failed") && !err.contains("wrong@"), "{err}");

    // A server certificate no trusted authority signed is refused.
    let untrusted = node.dir.path().join("node.pem");
    let stranger = RedisKv::open(&node.url("s3cret", &untrusted)).unwrap();
    let err = stranger.list_actors().await.unwrap_err().to_string();
    assert!(err.contains("connecting to redis cluster"), "{err}");
}
