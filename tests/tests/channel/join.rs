//! The join protocol under an unlucky schedule: a subscriber process stopped between taking
//! its slot and publishing its wake-up address, while the publisher looks at the slots.

use resmem_e2e::exit;

use super::channel_support::*;
use super::support::Scope;

/// The publisher scans while a joiner has taken slot 0 (lock object held, state active) but
/// not yet written its nonce; the joiner then publishes the nonce, bumps `joins` and waits.
/// The next send must wake it: the publisher has to take the nonce the joiner published, not
/// the one it read before.
#[test]
fn a_joiner_seen_before_it_published_its_nonce_is_still_woken() {
    let scope = Scope::new("chjoin");
    let publisher = builder(&scope).create().unwrap();
    let mut joiner = spawn(&scope, "slow-join", &[], "slow joiner");
    expect(&mut joiner, "claimed");
    assert_eq!(
        publisher.update_connections(),
        1,
        "the taken slot is attached"
    );
    joiner.send("go");
    expect(&mut joiner, "joined");
    expect(&mut joiner, "waiting");
    assert_eq!(publisher.number_of_subscribers(), 1);
    assert_eq!(publisher.send_copy(b"wake up").unwrap(), 1);
    expect(&mut joiner, "woken");
    exits_with(&mut joiner, exit::OK);
    wait_subscribers(&publisher, 0);
    drop(publisher);
    scope.assert_clean();
}
