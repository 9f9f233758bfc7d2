//! The localtunnel control request (`GET /?new`, `GET /NAME`): any path and query is read without a panic,
//! and a requested name is one path segment, lower-cased.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2pvps_server::gateway::localtunnel::{ControlRequest, control_request};

fuzz_target!(|input: (&str, Option<&str>)| {
    let (path, query) = input;
    if let ControlRequest::Named(name) = control_request(path, query) {
        assert!(!name.contains('/') && !name.is_empty());
        assert_eq!(name, name.to_ascii_lowercase());
    }
});
