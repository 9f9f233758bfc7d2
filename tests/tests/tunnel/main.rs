//! The tunnels binary: the SSH tunnel server with the real OpenSSH client, the web gateway with real HTTP
//! clients and the unmodified `lt` client, and the real device agent.

mod agent;
mod gateway;
mod ssh;
