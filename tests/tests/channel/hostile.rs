//! Hostile peers against the channel, across processes: a subscriber process scribbling its
//! own queues in the control object (forged, repeated and never-received offsets, impossible
//! indices) next to an honest subscriber process that checks every byte of every sample it
//! holds; and a publisher process writing out-of-range offsets, lengths and queue indices into
//! this process's submission queue.

use std::time::Duration;

use resmem::{ChannelError, Overflow, Subscriber};
use resmem_e2e::exit;
use resmem_e2e::sample::check_sample;

use super::channel_support::*;
use super::support::{Peer, STEP, Scope};
use super::{SEED, SEED_ARG};

const LEN: usize = 2048;

/// Sends sample `i`, checks how many subscribers it reached and that the honest subscriber
/// received it intact (it prints `got` after it gave back what left its hold window).
fn lockstep(publisher: &resmem::Publisher, honest: &mut Peer, i: u64, reach: usize) -> u64 {
    let (offset, reached) = send(publisher, SEED, i, LEN);
    assert_eq!(reached, reach, "sample {i}");
    assert_eq!(
        next_got(honest),
        Got {
            id: i,
            len: LEN,
            offset
        }
    );
    offset
}

/// The hostile subscriber returns a sample it holds (valid), the same again, three forged
/// entries and 16 guesses at the two samples the honest subscriber holds but it never got:
/// exactly the 20 bad ones are counted as violations, nothing the honest one holds is freed
/// or loaned out (it re-checks every held sample when it drops it), impossible queue indices
/// only cut the hostile one off, and its SIGKILL reclaims everything it held.
#[test]
fn a_hostile_subscriber_cannot_free_twice_or_free_what_another_holds() {
    let scope = Scope::new("chhostsub");
    let publisher = builder(&scope)
        .buffer_size(64)
        .max_borrowed(8)
        .overflow(Overflow::DropNewest)
        .create()
        .unwrap();
    let view = memory_view(&scope);
    let args = [
        "--count",
        "24",
        "--hold",
        "4",
        "--recheck",
        "--verify",
        SEED_ARG,
    ];
    let (mut honest, _) = subscriber(&scope, "subscribe", &args, "honest subscriber");
    wait_subscribers(&publisher, 1);
    let mut offsets: Vec<u64> = (0..4)
        .map(|i| lockstep(&publisher, &mut honest, i, 1))
        .collect();
    let (mut hostile, _) = subscriber(&scope, "scribble", &[], "hostile subscriber");
    wait_subscribers(&publisher, 2);
    offsets.extend((4..6).map(|i| lockstep(&publisher, &mut honest, i, 2)));
    hostile.send("receive");
    let got = hostile.line(STEP);
    assert_eq!(parse_got(&got).offset, offsets[4], "{got}");

    // Samples 2 and 3: held by the honest subscriber, never sent to the hostile one.
    assert_eq!(publisher.violations(), 0);
    hostile.send(&format!("forge {} {}", offsets[2], offsets[3]));
    let entries: u64 = field(&hostile.line(STEP), "entries");
    assert_eq!(entries, 5 + 2 * 8);
    assert_eq!(publisher.number_of_subscribers(), 2);
    assert_eq!(
        publisher.violations(),
        entries - 1,
        "every return but the first is refused"
    );
    // Held: 2..5 by the honest subscriber (4 by the hostile one too, which returned it), 5 queued
    // for the hostile one.
    assert_eq!(chunks_in_use(&view), 4);
    let loans: Vec<_> = (0..8)
        .map(|_| publisher.loan(layout(LEN)).unwrap())
        .collect();
    for loan in &loans {
        let offset = loan.offset().as_u64();
        assert!(
            !offsets[2..6].contains(&offset),
            "loaned {offset}, which is still held"
        );
    }
    drop(loans);
    // The honest subscriber drops (and re-checks) 2 and 3 during these.
    for i in 6..12 {
        lockstep(&publisher, &mut honest, i, 2);
    }

    hostile.send("indices");
    expect(&mut hostile, "scribbled");
    let before = publisher.violations();
    lockstep(&publisher, &mut honest, 12, 1);
    assert!(
        publisher.violations() - before >= 2,
        "an impossible completion write and submission read are both counted"
    );
    for i in 13..18 {
        lockstep(&publisher, &mut honest, i, 1);
    }
    hostile.kill();
    wait_subscribers(&publisher, 1);
    for i in 18..24 {
        lockstep(&publisher, &mut honest, i, 1);
    }
    expect(&mut honest, &format!("done samples=24 bytes={}", 24 * LEN));
    expect(&mut honest, "left");
    exits_with(&mut honest, exit::OK);
    assert_eq!(publisher.number_of_subscribers(), 0);
    assert_eq!(
        chunks_in_use(&view),
        0,
        "everything either subscriber held is free"
    );
    drop((view, publisher));
    scope.assert_clean();
}

/// A publisher process overwrites queued entries with a segment that does not exist, offsets
/// past the payload, a length of 2^40 - 1, a range crossing the payload's end, and sets the
/// queue's write index ahead, behind and to 2^64 - 1: every receive is `Corrupted` (nothing is
/// read outside a mapping, or this process would have died), and every valid sample after
/// each one arrives intact. A forged sample index with a valid offset reads the right bytes;
/// the publisher refuses its return, as it refuses every forged offset given back.
#[test]
fn a_hostile_publisher_gets_corrupted_errors_not_wild_reads() {
    let scope = Scope::new("chhostpub");
    let mut hostile = spawn(
        &scope,
        "hostile-publish",
        &["--seed", SEED_ARG],
        "hostile publisher",
    );
    expect(&mut hostile, "created");
    let subscriber = Subscriber::builder(SVC)
        .config(&scope.config())
        .timeout(STEP)
        .open()
        .unwrap();
    expect(&mut hostile, "subscribers 1");
    let mut n = 0;
    let valid = |hostile: &mut Peer, n: &mut u64| {
        hostile.send("valid");
        let offset: u64 = expect_prefix(hostile, &format!("sent {n} "))
            .parse()
            .unwrap();
        let sample = subscriber.receive().unwrap().expect("a valid sample");
        assert_eq!(check_sample(sample.payload(), SEED), Ok(*n));
        assert_eq!(sample.offset().as_u64(), offset);
        *n += 1;
    };
    valid(&mut hostile, &mut n);
    for kind in ["segment", "offset", "far", "len", "straddle"] {
        hostile.send(&format!("forge {kind}"));
        expect(&mut hostile, &format!("forged {kind}"));
        n += 1;
        assert_eq!(
            subscriber.receive().err(),
            Some(ChannelError::Corrupted),
            "{kind}"
        );
        valid(&mut hostile, &mut n);
    }
    hostile.send("forge index");
    expect(&mut hostile, "forged index");
    let sample = subscriber
        .receive()
        .unwrap()
        .expect("bytes of a valid chunk");
    assert_eq!(check_sample(sample.payload(), SEED), Ok(n));
    n += 1;
    drop(sample);
    for how in ["ahead", "behind", "huge"] {
        hostile.send(&format!("indices {how}"));
        expect(&mut hostile, &format!("scribbled {how}"));
        assert_eq!(
            subscriber.receive().err(),
            Some(ChannelError::Corrupted),
            "{how}"
        );
        assert_eq!(
            subscriber.receive_timeout(Duration::from_millis(20)).err(),
            Some(ChannelError::Corrupted),
            "{how}, waiting"
        );
        hostile.send("restore");
        expect(&mut hostile, "restored");
        valid(&mut hostile, &mut n);
    }
    // segment, offset, far, straddle and index came back as forged: refused. `len` came back
    // with its true offset and index: accepted.
    hostile.send("violations");
    assert_eq!(expect_prefix(&mut hostile, "violations "), "5");
    drop(subscriber);
    hostile.send("exit");
    expect(&mut hostile, "dropped");
    exits_with(&mut hostile, exit::OK);
    scope.assert_clean();
}
