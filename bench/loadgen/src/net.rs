//! `sink` and `blast`: the loopback TCP ceiling — how many bytes per second one plain TCP connection carries on this machine.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

use crate::common::{mb_per_s, print_result, require_loopback, round3};

#[derive(Args, Debug)]
pub struct SinkArgs {
    /// Address to listen on (loopback only); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[derive(Args, Debug)]
pub struct BlastArgs {
    /// The sink's address (loopback only), as printed by `sink`.
    #[arg(long)]
    to: SocketAddr,
    /// Seconds of writing.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Bytes handed to each write call.
    #[arg(long, default_value_t = 1 << 20)]
    buffer_bytes: usize,
}

/// Accepts one connection and reads it to the end; the time runs from the first byte to EOF.
pub fn sink(args: SinkArgs) -> Result<()> {
    require_loopback(&args.listen)?;
    let listener =
        TcpListener::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {local}").context("writing the address")?;
        out.flush().context("flushing stdout")?;
    }
    let (mut stream, peer) = listener.accept().context("accepting the connection")?;
    eprintln!("sink: connection from {peer}");

    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes: u64 = 0;
    let mut first: Option<Instant> = None;
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                first.get_or_insert_with(Instant::now);
                bytes += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("reading from the connection"),
        }
    }
    let seconds = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    print_result(&json!({
        "mode": "sink",
        "bytes": bytes,
        "seconds": round3(seconds),
        "mb_per_s": round3(mb_per_s(bytes, seconds)),
    }))
}

/// Writes the same buffer over and over for the given time, then closes.
pub fn blast(args: BlastArgs) -> Result<()> {
    require_loopback(&args.to)?;
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!("--seconds must be a positive number");
    }
    if args.buffer_bytes == 0 {
        bail!("--buffer-bytes must be at least 1");
    }
    let duration = Duration::from_secs_f64(args.seconds);
    let mut stream =
        TcpStream::connect(args.to).with_context(|| format!("connecting to {}", args.to))?;
    let buffer: Vec<u8> = (0..args.buffer_bytes).map(|i| (i % 251) as u8).collect();

    let started = Instant::now();
    let mut bytes: u64 = 0;
    while started.elapsed() < duration {
        stream
            .write_all(&buffer)
            .context("writing to the connection")?;
        bytes += buffer.len() as u64;
    }
    stream
        .shutdown(Shutdown::Write)
        .context("closing the connection")?;
    let seconds = started.elapsed().as_secs_f64();
    print_result(&json!({
        "mode": "blast",
        "bytes": bytes,
        "seconds": round3(seconds),
        "mb_per_s": round3(mb_per_s(bytes, seconds)),
    }))
}
