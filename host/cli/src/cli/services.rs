//! Services in `resmem ls`, `inspect`, `gc` and `rm`: a service is known by its control object
//! (`<prefix><service>__svc`); its samples live in a memory of the same name, which these
//! commands show and clean up as memories.

use anyhow::{Context, Result};
use resmem::channel::{self, ChannelError, ServiceInfo};
use resmem::{Config, StaleRemoval};

/// `ls`: one row per service after the memories' table; prints nothing without services.
pub fn ls(config: &Config) -> Result<()> {
    let services = channel::list_services(config).context("listing services")?;
    if services.is_empty() {
        return Ok(());
    }
    println!(
        "\n{:<32} {:>9} {:>7} {:>11} {:>7} {:>8} {:>10}",
        "SERVICE", "PUBLISHER", "STATE", "SUBSCRIBERS", "QUEUED", "BORROWED", "SENT"
    );
    for service in &services {
        match channel::service_info(service, config) {
            Ok(info) => {
                let alive: Vec<_> = info.subscribers.iter().filter(|s| s.alive).collect();
                println!(
                    "{:<32} {:>9} {:>7} {:>11} {:>7} {:>8} {:>10}",
                    service,
                    info.publisher_pid,
                    state(&info),
                    alive.len(),
                    alive.iter().map(|s| s.queued).sum::<u64>(),
                    alive.iter().map(|s| u64::from(s.borrowed)).sum::<u64>(),
                    info.sent
                );
            }
            Err(e) => {
                let state = match channel::is_publisher_alive(service, config) {
                    Ok(true) => "alive",
                    Ok(false) => "stale",
                    Err(_) => "unknown",
                };
                println!("{service:<32} {:>9} {state:>7}  ({e})", "-");
            }
        }
    }
    Ok(())
}

fn state(info: &ServiceInfo) -> &'static str {
    if info.publisher_alive {
        "alive"
    } else {
        "stale"
    }
}

/// `inspect NAME`: when NAME is a service, prints it and returns `true` (the caller then
/// shows its memory); `false` when there is no service of that name.
pub fn inspect(name: &str, namespace: &str, config: &Config) -> Result<bool> {
    let info = match channel::service_info(name, config) {
        Ok(info) => info,
        Err(ChannelError::DoesNotExist) => return Ok(false),
        Err(e) => {
            let listed = channel::list_services(config)
                .map(|names| names.iter().any(|n| n == name))
                .unwrap_or(false);
            if !listed {
                return Ok(false);
            }
            println!("service     {namespace}{name}");
            println!("            (control object unreadable: {e})\n");
            return Ok(true);
        }
    };
    println!("service     {namespace}{name}");
    println!(
        "publisher   pid {} ({})",
        info.publisher_pid,
        if info.publisher_alive {
            "alive"
        } else {
            "gone: stale, remove with `resmem gc` or `resmem rm`"
        }
    );
    println!("overflow    {:?}", info.overflow);
    println!(
        "limits      {} subscribers, queue {} samples, {} borrowed per subscriber",
        info.max_subscribers, info.buffer_size, info.max_borrowed
    );
    println!("sent        {} samples", info.sent);
    println!("violations  {}", info.violations);
    println!(
        "subscribers {} of {} slots taken",
        info.subscribers.len(),
        info.max_subscribers
    );
    if !info.subscribers.is_empty() {
        println!(
            "\n{:>7} {:>9} {:>7} {:>7} {:>8}",
            "SLOT", "PID", "STATE", "QUEUED", "BORROWED"
        );
        for slot in &info.subscribers {
            println!(
                "{:>7} {:>9} {:>7} {:>7} {:>8}",
                slot.slot,
                slot.pid,
                if slot.alive { "alive" } else { "dead" },
                slot.queued,
                slot.borrowed
            );
        }
    }
    println!();
    Ok(true)
}

/// `gc`: removes every service whose publisher is gone (control object, memory, lock objects
/// of dead subscribers); a live publisher's service is never touched. Prints a summary when
/// the namespace has services. Returns the services removed (or that would be).
pub fn gc(namespace: &str, config: &Config, dry_run: bool) -> Result<Vec<String>> {
    let services = channel::list_services(config).context("listing services")?;
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut removed = Vec::new();
    for service in &services {
        if channel::is_publisher_alive(service, config)
            .with_context(|| format!("checking service '{service}'"))?
        {
            continue;
        }
        let pid = channel::service_info(service, config)
            .map(|info| info.publisher_pid.to_string())
            .unwrap_or_else(|_| "unknown".into());
        let gone = dry_run
            || match channel::remove_stale_service(service, config)
                .with_context(|| format!("removing service '{service}'"))?
            {
                StaleRemoval::Removed => true,
                // A new publisher took the name, or another gc won; anything else is no
                // removal either.
                _ => false,
            };
        if gone {
            println!("{verb} service '{service}' (publisher pid {pid}, gone)");
            removed.push(service.clone());
        }
    }
    let count = removed.len();
    if !services.is_empty() {
        println!(
            "{verb} {count} stale {} from namespace '{namespace}'",
            if count == 1 { "service" } else { "services" }
        );
    }
    Ok(removed)
}

/// `rm NAME` of a service: removes it when its publisher is gone. `None` when NAME is no
/// service; otherwise whether it was removed, or an error naming the live publisher.
pub fn rm(name: &str, config: &Config) -> Result<Option<bool>> {
    let listed = channel::list_services(config)
        .context("listing services")?
        .iter()
        .any(|n| n == name);
    if !listed {
        return Ok(None);
    }
    match channel::remove_stale_service(name, config).context("removing")? {
        StaleRemoval::Removed => Ok(Some(true)),
        StaleRemoval::NotFound => Ok(Some(false)),
        StaleRemoval::OwnerAlive => {
            let pid = channel::service_info(name, config)
                .map(|info| info.publisher_pid.to_string())
                .unwrap_or_else(|_| "unknown".into());
            anyhow::bail!(
                "service '{name}' has a live publisher (pid {pid}); it removes the service when \
                 it exits (--force does not apply to services)"
            )
        }
        other => anyhow::bail!("removing service '{name}': {other:?}"),
    }
}
