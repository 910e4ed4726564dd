//! The wasmtime engine every guest runs on, and a cache of compiled components.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// Engine settings chosen by the host.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
}

impl EngineOptions {
    /// `$RESMEM_CACHE_DIR`, else `$XDG_CACHE_HOME/resmem`, else `~/.cache/resmem`.
    pub fn with_default_cache() -> Self {
        let dir = std::env::var_os("RESMEM_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("resmem")))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/resmem")));
        Self { cache_dir: dir }
    }
}

/// The engine `resmem run` and [`crate::GuestHost`] use:
/// - the component model, without its async/concurrency machinery (`concurrency_support`
///   off): guests make plain synchronous calls, and the per-store concurrency state roughly
///   doubles the cost of every guest-to-host call (a prototype measured ~215 ns against ~85 ns
///   for a no-op round trip);
/// - what the zero-copy window needs ([`crate::configure`]);
/// - epoch interruption, so a guest that runs past its deadline is stopped (see
///   `Policy::deadline`); it adds one check per loop header and function entry and changes
///   the compiled code, which the cache key below covers (the compatibility hash includes the
///   engine's tunables);
/// - everything else at wasmtime's defaults (Cranelift, on-demand instance allocation).
///
/// A store of this engine made elsewhere than [`crate::GuestHost::store`] needs
/// `Store::set_epoch_deadline` (or [`crate::arm_deadline`]) before it runs code: without one
/// it traps at the first check. Nothing here installs signal handlers or starts threads.
pub fn new_engine() -> Result<Engine, crate::HostError> {
    Engine::new(&engine_config()).map_err(|e| crate::HostError::Engine(e.into()))
}

fn engine_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.concurrency_support(false);
    crate::configure(&mut config);
    config.epoch_interruption(true);
    config
}

/// Loads a component, from the cache when this engine compiled the same bytes before.
pub fn load_component(engine: &Engine, bytes: &[u8], options: &EngineOptions) -> Result<Component> {
    let Some(dir) = &options.cache_dir else {
        return Ok(Component::new(engine, bytes)?);
    };
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    bytes.hash(&mut hasher);
    let path = dir.join(format!("{:016x}.cwasm", hasher.finish()));
    if path.exists() {
        // SAFETY: the file lives in the host's private cache and was written by `serialize`
        // of an engine with the same compatibility hash (it is part of the file name);
        // wasmtime checks the header again and fails instead of loading foreign code.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok(component),
            Err(_) => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let component = Component::new(engine, bytes)?;
    if let Ok(serialized) = component.serialize() {
        let _ = store_atomically(dir, &path, &serialized);
    }
    Ok(component)
}

/// Writes to a temporary file and renames it, so concurrent hosts never read half a file.
fn store_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}",
        std::process::id(),
        path.file_name().and_then(|n| n.to_str()).unwrap_or("c")
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compatibility_hash(engine: &Engine) -> u64 {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        hasher.finish()
    }

    /// Components cached by an engine without epoch checks must not be loaded by this one (they
    /// would run forever unchecked): the cache key changes with the setting.
    #[test]
    fn epoch_interruption_is_part_of_the_cache_key() {
        let ours = new_engine().unwrap();
        let mut without = engine_config();
        without.epoch_interruption(false);
        let without = Engine::new(&without).unwrap();
        assert_ne!(compatibility_hash(&ours), compatibility_hash(&without));
        assert_eq!(
            compatibility_hash(&ours),
            compatibility_hash(&new_engine().unwrap())
        );
    }
}
