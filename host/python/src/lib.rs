//! `import resmem`: Python peers of resmem. A [`memory::Memory`] owns named shared memory and
//! hands out chunks, a [`view::View`] maps another process's memory from offsets, and
//! [`channel`] publishes and subscribes samples. Chunks, registrations and samples are Python
//! buffers over the shared bytes themselves (`numpy.frombuffer`, `memoryview`: no copy), and
//! each refuses to go (free, unregister, release) while a buffer of it is still exported, so
//! numpy never points at memory that was given back.
//!
//! `namespace=` is the native `Config` prefix, the string `resmem run --namespace` takes.

mod buffer;
mod channel;
mod errors;
mod manage;
mod memory;
mod view;

use pyo3::prelude::*;

/// The extension module, re-exported by the `resmem` package.
#[pymodule]
fn _resmem(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<memory::Memory>()?;
    m.add_class::<memory::Chunk>()?;
    m.add_class::<view::View>()?;
    m.add_class::<view::Registration>()?;
    m.add_class::<channel::Publisher>()?;
    m.add_class::<channel::Loan>()?;
    m.add_class::<channel::Subscriber>()?;
    m.add_class::<channel::Sample>()?;
    m.add_function(wrap_pyfunction!(manage::list, m)?)?;
    m.add_function(wrap_pyfunction!(manage::exists, m)?)?;
    m.add_function(wrap_pyfunction!(manage::remove, m)?)?;
    Ok(())
}

/// The native configuration of `namespace` (`None`: resmem's default prefix).
pub(crate) fn config(namespace: Option<&str>) -> resmem::Config {
    match namespace {
        Some(ns) => resmem::Config::default().prefix(ns),
        None => resmem::Config::default(),
    }
}
