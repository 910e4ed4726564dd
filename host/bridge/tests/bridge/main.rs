//! Two real `resmem-bridge` processes carry channel services between two namespaces: on
//! loopback with explicit endpoints and multicast off, and across two network namespaces
//! (two network stacks, a veth pair between them) when the test runs as root. Native
//! publishers and subscribers live in this process (shared memory does not care about network
//! namespaces); the bridges are separate processes; a guest publisher runs in a wasmtime host
//! here.

mod guest;
mod harness;
mod hostile;
mod hosts;
mod outages;
