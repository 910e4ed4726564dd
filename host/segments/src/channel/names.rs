//! OS object names of a service, beside its memory's (`<prefix><service>__mgmt<suffix>`,
//! `__0`, `__1`, ...): `<prefix><service>__svc<suffix>` for the control object and
//! `<prefix><service>__sub<epoch>_<k><suffix>` for the lock object by which subscriber slot
//! `k` of publisher `epoch` shows its occupant alive.

use crate::{Config, NameError};

const CONTROL: &str = "__svc";
const LOCK: &str = "__sub";

pub(crate) fn control_name(service: &str, config: &Config) -> String {
    format!(
        "{}{service}{CONTROL}{}",
        config.get_prefix(),
        config.get_suffix()
    )
}

pub(crate) fn lock_name(service: &str, epoch: u64, k: usize, config: &Config) -> String {
    format!(
        "{}{service}{LOCK}{epoch:016x}_{k}{}",
        config.get_prefix(),
        config.get_suffix()
    )
}

/// Creates subscriber slot lock object `name`: one page, taken exclusively and locked at once
/// (by a joiner claiming the slot, or by the publisher holding it during a reclaim).
pub(crate) fn create_lock_object(
    name: &str,
    config: &Config,
) -> std::io::Result<crate::backend::Mapping> {
    config.get_backend().create(
        name,
        crate::backend::page_size(),
        &crate::backend::CreateOptions {
            permissions: config.get_permissions(),
            prefault: false,
            lock_exclusive: true,
        },
    )
}

/// Checks a service name: a valid memory name whose longest derived name (a lock object's)
/// also fits the backend.
pub(crate) fn validate(service: &str, config: &Config) -> Result<(), NameError> {
    crate::name::validate(service, config)?;
    let longest = lock_name(service, u64::MAX, super::layout::MAX_SUBSCRIBERS, config);
    let max = config.get_backend().max_name_len();
    if longest.len() > max {
        return Err(NameError::TooLong {
            len: longest.len(),
            max,
        });
    }
    Ok(())
}

fn strip<'a>(os_name: &'a str, config: &Config) -> Option<&'a str> {
    os_name
        .strip_prefix(config.get_prefix())?
        .strip_suffix(config.get_suffix())
}

/// The service whose control object `os_name` is.
pub(crate) fn parse_control<'a>(os_name: &'a str, config: &Config) -> Option<&'a str> {
    let service = strip(os_name, config)?.strip_suffix(CONTROL)?;
    (!service.is_empty()).then_some(service)
}

/// The service whose subscriber lock object `os_name` is (any epoch, any slot).
pub(crate) fn parse_lock<'a>(os_name: &'a str, config: &Config) -> Option<&'a str> {
    let (service, tail) = strip(os_name, config)?.rsplit_once(LOCK)?;
    let (epoch, k) = tail.split_once('_')?;
    let well_formed = epoch.len() == 16
        && epoch.bytes().all(|b| b.is_ascii_hexdigit())
        && !k.is_empty()
        && k.bytes().all(|b| b.is_ascii_digit());
    (well_formed && !service.is_empty()).then_some(service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        let c = Config::default().prefix("p_").suffix(".s");
        assert_eq!(control_name("cam", &c), "p_cam__svc.s");
        assert_eq!(parse_control("p_cam__svc.s", &c), Some("cam"));
        let lock = lock_name("cam", 0xab, 3, &c);
        assert_eq!(lock, "p_cam__sub00000000000000ab_3.s");
        assert_eq!(parse_lock(&lock, &c), Some("cam"));
        assert_eq!(parse_lock("p_cam__subxyz_3.s", &c), None);
        assert_eq!(parse_control("p___svc.s", &c), None);
        // Not a memory's segment or management name.
        assert_eq!(crate::name::parse_mgmt(&lock, &c), None);
        assert_eq!(crate::name::parse_segment(&lock, &c), None);
        assert_eq!(crate::name::parse_segment("p_cam__svc.s", &c), None);
    }
}
