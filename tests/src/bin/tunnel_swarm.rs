//! `tunnel-swarm`: holds many devices' idle tunnels open from one process, for `cargo xtask bench tunnel`
//! (memory per idle tunnel at 1,000 and 10,000 devices). Reads `DEVICE_ID CREDENTIAL` lines from
//! `DEVICES_FILE`, connects them all to `SSH_ADDR` with forwarded connections going to `TARGET`, prints
//! `ready UP FAILED` on stdout, then holds the tunnels until its stdin closes.
//!
//! Usage: `tunnel-swarm SSH_ADDR DEVICES_FILE TARGET [PARALLEL]`

use std::net::SocketAddr;
use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: tunnel-swarm SSH_ADDR DEVICES_FILE TARGET [PARALLEL]";
    let (Some(server), Some(file), Some(target)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let parse = |s: &str| -> SocketAddr {
        s.parse().unwrap_or_else(|_| {
            eprintln!("not an address: {s}\n{usage}");
            std::process::exit(2)
        })
    };
    let (server, target) = (parse(server), parse(target));
    let parallel = args.get(3).and_then(|p| p.parse().ok()).unwrap_or(64);
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| {
        eprintln!("cannot read {file}: {e}");
        std::process::exit(2)
    });
    let devices: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, c)| (id.to_owned(), c.trim().to_owned()))
        .collect();
    let (up, failed) = p2pvps_tests::swarm::connect_all(server, devices, target, parallel).await;
    if let Some(first) = failed.first() {
        eprintln!("    swarm: {} failed, first: {first}", failed.len());
    }
    println!("ready {} {}", up.len(), failed.len());
    // Hold until the caller closes our stdin.
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    drop(up);
}
