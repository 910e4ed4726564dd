//! The host side of `resmem:memory/channel`: a guest's publishers and subscribers are native
//! [`resmem::Publisher`]s and [`resmem::Subscriber`]s, so guests and native processes share
//! services. The host keeps every loan and received sample of a guest in its own records
//! (detached tokens keyed by offset), so a guest can only pass back what it was given, and
//! returns all of them when the resource (or the whole store) goes.

mod state;

pub use state::{GuestPublisher, GuestSubscriber};
