#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Test harness: runs the real `blumfeld` binary on 127.0.0.1 with an ephemeral port and its
//! own temp data dir, and a minimal Kafka client built on `kafka-protocol`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub struct Broker {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    overrides: Vec<String>,
}

impl Broker {
    pub fn start(overrides: &[&str]) -> Broker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut b = Self::spawn(dir, overrides.iter().map(|s| s.to_string()).collect());
        b._tmp = Some(tmp);
        b
    }

    fn spawn(dir: PathBuf, overrides: Vec<String>) -> Broker {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_blumfeld"));
        cmd.arg("--override").arg(format!("log.dirs={}", dir.display()));
        cmd.arg("--override").arg("listeners=PLAINTEXT://127.0.0.1:0");
        cmd.arg("--override").arg("metrics.listener=127.0.0.1:0");
        for o in &overrides {
            cmd.arg("--override").arg(o);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn blumfeld");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = lines.next().expect("broker exited before listening").expect("read stdout");
            if let Some(rest) = line.strip_prefix("blumfeld listening on ") {
                break rest.rsplit(':').next().unwrap().parse().unwrap();
            }
        };
        Broker { child, port, dir, _tmp: None, overrides }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.addr())
    }

    /// SIGKILL, then start again on the same data directory.
    pub fn kill_and_restart(mut self) -> Broker {
        self.child.kill().ok();
        self.child.wait().ok();
        let mut next = Self::spawn(self.dir.clone(), self.overrides.clone());
        next._tmp = self._tmp.take();
        next
    }

    /// SIGTERM, wait for a clean exit, then start again on the same data directory.
    pub fn stop_and_restart(mut self) -> Broker {
        self.terminate();
        let mut next = Self::spawn(self.dir.clone(), self.overrides.clone());
        next._tmp = self._tmp.take();
        next
    }

    pub fn terminate(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY-free: send SIGTERM through the kill command.
        Command::new("kill").arg("-TERM").arg(pid.to_string()).status().ok();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "broker exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("broker did not stop within 20 s of SIGTERM");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Client {
    pub stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    pub fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream.set_nodelay(true).unwrap();
        Client { stream, correlation_id: 0 }
    }

    pub fn send_raw(&mut self, frame: &[u8]) {
        self.stream.write_all(frame).expect("write");
    }

    /// Reads one response frame; None if the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).ok()?;
        let n = u32::from_be_bytes(len) as usize;
        let mut buf = vec![0u8; n];
        self.stream.read_exact(&mut buf).ok()?;
        Some(Bytes::from(buf))
    }

    pub fn request_frame(&mut self, api: ApiKey, version: i16, body: &RequestKind) -> BytesMut {
        self.correlation_id += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = api as i16;
        header.request_api_version = version;
        header.correlation_id = self.correlation_id;
        header.client_id = Some(StrBytes::from_static_str("blumfeld-test"));
        let mut buf = BytesMut::new();
        buf.put_u32(0);
        header.encode(&mut buf, api.request_header_version(version)).unwrap();
        body.encode(&mut buf, version).unwrap();
        let n = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&n.to_be_bytes());
        buf
    }

    pub fn call(&mut self, api: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        let frame = self.request_frame(api, version, &body);
        self.send_raw(&frame);
        let mut resp = self.read_frame().expect("connection closed by broker");
        let header = ResponseHeader::decode(&mut resp, api.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation_id);
        let r = ResponseKind::decode(api, &mut resp, version).unwrap();
        assert!(!resp.has_remaining(), "trailing bytes in {api:?} v{version} response");
        r
    }
}
