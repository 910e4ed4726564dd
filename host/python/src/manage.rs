//! `resmem.list`, `resmem.exists`, `resmem.remove`.

use pyo3::prelude::*;

use crate::errors;

/// The memories in `namespace`, by name (without the namespace).
#[pyfunction]
#[pyo3(signature = (namespace=None))]
pub fn list(namespace: Option<&str>) -> PyResult<Vec<String>> {
    resmem::list(&crate::config(namespace)).map_err(errors::manage)
}

/// Whether a memory `name` exists in `namespace`.
#[pyfunction]
#[pyo3(signature = (name, *, namespace=None))]
pub fn exists(name: &str, namespace: Option<&str>) -> PyResult<bool> {
    resmem::exists(name, &crate::config(namespace)).map_err(errors::manage)
}

/// Removes memory `name` if its owner is gone (a stale memory); returns whether anything was
/// removed. A live owner's memory raises `PermissionDenied`.
#[pyfunction]
#[pyo3(signature = (name, *, namespace=None))]
pub fn remove(name: &str, namespace: Option<&str>) -> PyResult<bool> {
    match resmem::remove_stale(name, &crate::config(namespace)).map_err(errors::manage)? {
        resmem::StaleRemoval::Removed => Ok(true),
        resmem::StaleRemoval::NotFound => Ok(false),
        resmem::StaleRemoval::OwnerAlive => Err(errors::PermissionDenied::new_err(format!(
            "{name}: its owner is alive; it is removed when the owner closes it"
        ))),
        other => Err(errors::Error::new_err(format!(
            "removing {name}: {other:?}"
        ))),
    }
}
