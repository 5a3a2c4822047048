//! A TCP proxy that injects faults between Strata and its object store:
//! refused connections, hangs, and latency, switchable while running and
//! applied to connections already open (HTTP clients pool connections).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Forward everything.
    Pass = 0,
    /// Close connections (new and open ones).
    Refuse = 1,
    /// Stop forwarding: requests never get an answer.
    Hang = 2,
    /// Forward with 300 ms of delay on every chunk.
    Slow = 3,
}

/// A running proxy.
#[derive(Debug, Clone)]
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
}

impl FaultProxy {
    /// Starts a proxy in front of `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(Fault::Pass as u8));
        let accept_mode = Arc::clone(&mode);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mode = Arc::clone(&accept_mode);
                tokio::spawn(async move {
                    if current(&mode) == Fault::Refuse {
                        return;
                    }
                    let Ok(upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (upstream_read, upstream_write) = upstream.into_split();
                    tokio::spawn(pump(client_read, upstream_write, Arc::clone(&mode)));
                    pump(upstream_read, client_write, mode).await;
                });
            }
        });
        Self { addr, mode }
    }

    /// Switches the fault.
    pub fn set(&self, fault: Fault) {
        self.mode.store(fault as u8, Ordering::SeqCst);
    }

    /// The endpoint URL for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn current(mode: &AtomicU8) -> Fault {
    match mode.load(Ordering::SeqCst) {
        1 => Fault::Refuse,
        2 => Fault::Hang,
        3 => Fault::Slow,
        _ => Fault::Pass,
    }
}

/// Copies one direction, consulting the fault before every chunk.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: Arc<AtomicU8>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        loop {
            match current(&mode) {
                Fault::Pass => break,
                Fault::Refuse => return,
                Fault::Slow => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    break;
                }
                // Hold the data until the fault changes.
                Fault::Hang => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
