//! Channels between guests and native processes: the real `channel` guest run by wasmtime in
//! this process, against `resmem-channel-peer` processes and native publishers here; the
//! host's channel calls directly for the exact quotas.

use std::process::Command;

use resmem::{ChannelError, Publisher};
use resmem_e2e::guest_frame as frame;
use resmem_host::ResmemView;
use resmem_host::bindings::channel_api::{
    ChannelConfig, HostPublisher, HostSubscriber, Overflow as WitOverflow,
};

use super::channel_support::{chunks_in_use, memory_view, wait_subscribers};
use super::*;

const CHANNEL_PEER: &str = env!("CARGO_BIN_EXE_resmem-channel-peer");

/// `resmem-channel-peer <mode> <service> --prefix <scope's> <args...>`.
fn peer(scope: &Scope, mode: &str, service: &str, args: &[&str]) -> Peer {
    let mut command = Command::new(CHANNEL_PEER);
    command
        .args([mode, service, "--prefix", scope.prefix()])
        .args(args);
    Peer::spawn(command, &format!("channel peer {mode} {service}"))
}

fn channel(host: &Arc<GuestHost>) -> Component {
    load(host, resmem_guests::CHANNEL_WASM)
}

/// `key=value` of a guest line.
fn value(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// What `resmem-channel-peer frames` prints for `count` frames of `first << seq` bytes, each
/// checked byte for byte there, ending in exit status 0.
pub(super) fn assert_native_frames(native: &mut Peer, count: u64, first: u64) {
    assert_eq!(native.line(STEP), "opening");
    assert_eq!(native.line(STEP), "joined slot=0");
    for seq in 0..count {
        let line = native.line(STEP);
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words[..3],
            ["frame", &seq.to_string(), &(first << seq).to_string()],
            "{line}"
        );
    }
    assert_eq!(native.line(STEP), format!("frames done count={count}"));
    assert!(native.wait(STEP).success(), "{}", native.stderr());
}

/// Frames of `first << i` bytes from a guest publisher reach a native subscriber process,
/// every byte checked there, while the memory adds segments (written by copy and in place).
#[test]
fn guest_publisher_to_native_subscriber_across_growth() {
    for map in [false, true] {
        let scope = Scope::new(if map { "gchpm" } else { "gchpc" });
        let host = host(&scope);
        let count = 11u64;
        let mut args = vec!["channel", "pub", "svc", "11", "1024", "--seed", "7"];
        if map {
            args.push("--map");
        }
        let guest = Running::start(&host, &channel(&host), &args);
        let mut native = peer(
            &scope,
            "frames",
            "svc",
            &["--count", "11", "--seed", "7", "--open-timeout-ms", "30000"],
        );
        assert_native_frames(&mut native, count, 1024);
        let end = guest.finish();
        assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
        assert_eq!(end.stdout.len(), count as usize + 1, "{end:?}");
        let mut segments = std::collections::BTreeSet::new();
        for (seq, line) in end.stdout.iter().take(count as usize).enumerate() {
            let sent = format!("sent seq={seq} len={} delivered=1 segment=", 1024u64 << seq);
            assert!(line.starts_with(&sent), "{line}");
            segments.insert(value(line, "segment"));
        }
        assert!(
            segments.len() >= 4,
            "the memory grew into new segments: {segments:?}"
        );
        assert_eq!(end.stdout[count as usize], "done sent=11");
        assert_empty(&scope);
    }
}

/// A native publisher process sends frames of growing size 50 ms apart; the guest sleeps in
/// `wasi:io/poll` between them (a per-frame timeout of 20 s: were the pollable not woken, it
/// would report `timeout`) and checks every byte, by copy and in place.
#[test]
fn native_publisher_to_guest_subscriber_woken_by_its_pollable() {
    for map in [false, true] {
        let scope = Scope::new(if map { "gchsm" } else { "gchsc" });
        let host = host(&scope);
        let mut native = peer(
            &scope,
            "send-frames",
            "svc",
            &[
                "--count",
                "8",
                "--len",
                "1024",
                "--seed",
                "9",
                "--wait-subscribers",
                "1",
                "--interval-us",
                "50000",
            ],
        );
        assert_eq!(native.line(STEP), "created");
        let mut args = vec![
            "channel",
            "sub",
            "svc",
            "8",
            "--seed",
            "9",
            "--timeout-ms",
            "20000",
        ];
        if map {
            args.push("--map");
        }
        let start = Instant::now();
        let mut guest = Running::start(&host, &channel(&host), &args);
        assert_eq!(guest.line(), "subscribed");
        assert_eq!(native.line(STEP), "subscribers 1");
        for seq in 0..8u64 {
            let sent = native.line(STEP);
            assert_eq!(sent, format!("sent {seq} {} 1", 1024u64 << seq));
            let got = guest.line();
            assert!(got.starts_with("got "), "{got}");
            assert_eq!(value(&got, "seq"), seq, "{got}");
            assert_eq!(value(&got, "len"), 1024 << seq, "{got}");
        }
        assert_eq!(guest.line(), "done received=8");
        let end = guest.finish();
        assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(native.line(STEP), "sent done");
        native.close_stdin();
        assert!(native.wait(STEP).success());
        assert_empty(&scope);
    }
}

/// A guest asleep in `poll` on a subscriber whose publisher never sends is stopped at its
/// deadline: the host's poll returns then, and the epoch check traps the guest. Its slot is
/// released with its store.
#[test]
fn a_guest_blocked_in_poll_is_stopped_at_its_deadline() {
    let scope = Scope::new("gchdl");
    let deadline = Duration::from_millis(800);
    let policy = Policy::builder()
        .namespace(scope.prefix())
        .deadline(Some(deadline))
        .build();
    let host = Arc::new(GuestHost::new(policy, engine_options()).expect("a host"));
    let mut native = peer(
        &scope,
        "send-frames",
        "svc",
        &["--count", "0", "--len", "64", "--seed", "1"],
    );
    assert_eq!(native.line(STEP), "created");
    assert_eq!(native.line(STEP), "subscribers 0");
    assert_eq!(native.line(STEP), "sent done");
    let start = Instant::now();
    let mut guest = Running::start(
        &host,
        &channel(&host),
        &["channel", "sub", "svc", "1", "--timeout-ms", "600000"],
    );
    assert_eq!(guest.line(), "subscribed");
    let end = guest.finish();
    let took = start.elapsed();
    assert_eq!(
        end.outcome,
        RunOutcome::DeadlineExceeded(deadline),
        "{end:?}"
    );
    assert!(took >= deadline, "stopped early: {took:?}");
    assert!(
        took < deadline + Duration::from_secs(6),
        "stopped late: {took:?}"
    );
    let info = resmem::channel::service_info("svc", &scope.config()).expect("the service lives");
    assert!(
        info.subscribers.iter().all(|s| !s.alive),
        "the guest's slot is released with its store: {info:?}"
    );
    native.close_stdin();
    assert!(native.wait(STEP).success());
    assert_empty(&scope);
}

/// A guest that traps (or exits) while it holds loans of its own publisher and samples of a
/// native one gives everything back at once: its service is removed, its slot is departed with
/// nothing borrowed, and the native publisher frees every chunk on its next look.
#[test]
fn a_guest_ending_with_loans_and_samples_returns_everything_at_once() {
    for then in ["trap", "exit"] {
        let scope = Scope::new(&format!("gchho{then}"));
        let host = host(&scope);
        let config = scope.config();
        let publisher = Publisher::builder("svc")
            .config(&config)
            .create()
            .expect("a native publisher");
        let mut guest = Running::start(
            &host,
            &channel(&host),
            &["channel", "hold", "out", "svc", "3", "2", "--then", then],
        );
        wait_subscribers(&publisher, 1);
        let mut buf = vec![0u8; 4096];
        let mut send = |seq| {
            assert!(frame::fill(&mut buf, 1, seq, 0, 0));
            assert_eq!(publisher.send_copy(&buf).expect("send"), 1);
        };
        send(0);
        send(1);
        assert_eq!(guest.line(), "holding loans=3 samples=2");
        // Two more stay queued in the guest's slot.
        send(2);
        send(3);
        guest.release();
        let end = guest.finish();
        match then {
            "trap" => assert!(matches!(end.outcome, RunOutcome::Trapped(_)), "{end:?}"),
            // WASI 0.2's exit carries only success or failure.
            _ => assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}"),
        }
        assert!(end.stdout.is_empty(), "{end:?}");
        // At once, before the native publisher did anything.
        assert_eq!(
            resmem::channel::service_info("out", &config).unwrap_err(),
            ChannelError::DoesNotExist
        );
        assert!(
            !scope.objects().iter().any(|o| o.contains("out")),
            "{:?}",
            scope.objects()
        );
        let info = resmem::channel::service_info("svc", &config).expect("the native service");
        assert!(
            info.subscribers.iter().all(|s| !s.alive && s.borrowed == 0),
            "{info:?}"
        );
        assert_eq!(publisher.update_connections(), 0);
        let view = memory_view(&scope);
        assert_eq!(chunks_in_use(&view), 0, "every sample came back");
        drop(view);
        drop(publisher);
        assert_empty(&scope);
    }
}

fn channel_config(max_loans: u32, max_borrowed: u32) -> ChannelConfig {
    ChannelConfig {
        max_subscribers: 2,
        buffer_size: 4,
        max_loans,
        max_borrowed,
        overflow: WitOverflow::DropOldest,
        memory: MemoryConfig {
            max_chunk_layout_hint: WitLayout { size: 64, align: 8 },
            max_number_of_chunks_hint: 4,
            allocation_strategy: WitStrategy::PowerOfTwo,
        },
    }
}

/// Publishers, subscribers, loans and borrowed samples: each quota is exact, refused with
/// `quota-exceeded` and freed again; the channel's own limits are `limit-reached`; every
/// offset is checked against the guest's own records; a failed send keeps its loan.
#[test]
fn channel_quotas_limits_and_checks_through_the_host() {
    let scope = Scope::new("gchq");
    let policy = policy(&scope, {
        let mut quotas = Quotas::default();
        quotas.publishers = 1;
        quotas.subscribers = 1;
        quotas.loans = 2;
        quotas.borrowed = 1;
        quotas.channel_config = 64;
        quotas
    });
    let mut state = GuestState::new(WasiCtxBuilder::new().build(), Arc::new(policy));
    let st = &mut state;
    let small = WitLayout { size: 64, align: 8 };
    let p = HostPublisher::create(&mut st.resmem(), "a".into(), channel_config(8, 1))
        .unwrap()
        .unwrap();
    let pb = || Resource::<resmem_host::GuestPublisher>::new_borrow(p.rep());
    let refused =
        HostPublisher::create(&mut st.resmem(), "b".into(), channel_config(8, 1)).unwrap();
    assert!(
        matches!(refused, Err(WitError::QuotaExceeded(_))),
        "{refused:?}"
    );
    let mut big = channel_config(8, 1);
    big.buffer_size = 65;
    assert!(matches!(
        HostPublisher::create(&mut st.resmem(), "b".into(), big).unwrap(),
        Err(WitError::QuotaExceeded(_))
    ));
    assert_eq!(st.usage().publishers, 1);

    let s = HostSubscriber::open(&mut st.resmem(), "a".into(), 0)
        .unwrap()
        .unwrap();
    let sb = || Resource::<resmem_host::GuestSubscriber>::new_borrow(s.rep());
    assert!(matches!(
        HostSubscriber::open(&mut st.resmem(), "a".into(), 0).unwrap(),
        Err(WitError::QuotaExceeded(_))
    ));
    assert_eq!(
        HostPublisher::number_of_subscribers(&mut st.resmem(), pb()).unwrap(),
        1
    );

    // Loans: the quota of two, freed by discard; a failed send keeps the loan.
    let l1 = HostPublisher::loan(&mut st.resmem(), pb(), small)
        .unwrap()
        .unwrap();
    let l2 = HostPublisher::loan(&mut st.resmem(), pb(), small)
        .unwrap()
        .unwrap();
    assert!(matches!(
        HostPublisher::loan(&mut st.resmem(), pb(), small).unwrap(),
        Err(WitError::QuotaExceeded(_))
    ));
    HostPublisher::discard(&mut st.resmem(), pb(), l1)
        .unwrap()
        .unwrap();
    assert!(matches!(
        HostPublisher::discard(&mut st.resmem(), pb(), l1).unwrap(),
        Err(WitError::InvalidOffset(_))
    ));
    assert_eq!(st.usage().loans, 1);
    let mut bytes = vec![0u8; 64];
    assert!(frame::fill(&mut bytes, 3, 0, 0, 0));
    HostPublisher::write(&mut st.resmem(), pb(), l2, 0, bytes.clone())
        .unwrap()
        .unwrap();
    assert!(matches!(
        HostPublisher::write(&mut st.resmem(), pb(), l2, 60, vec![0; 5]).unwrap(),
        Err(WitError::InvalidOffset(_))
    ));
    assert!(matches!(
        HostPublisher::send(&mut st.resmem(), pb(), l2, 65).unwrap(),
        Err(WitError::InvalidLayout(_))
    ));
    assert_eq!(st.usage().loans, 1, "the refused send kept its loan");
    assert_eq!(
        HostPublisher::send(&mut st.resmem(), pb(), l2, 64)
            .unwrap()
            .unwrap(),
        1
    );
    assert_eq!(st.usage().loans, 0);
    assert!(matches!(
        HostPublisher::write(&mut st.resmem(), pb(), l2, 0, vec![1]).unwrap(),
        Err(WitError::InvalidOffset(_))
    ));
    let l3 = HostPublisher::loan(&mut st.resmem(), pb(), small)
        .unwrap()
        .unwrap();
    HostPublisher::write(&mut st.resmem(), pb(), l3, 0, bytes.clone())
        .unwrap()
        .unwrap();
    assert_eq!(
        HostPublisher::send(&mut st.resmem(), pb(), l3, 64)
            .unwrap()
            .unwrap(),
        1
    );

    // Borrowed: the quota of one; reads stay inside the sample; a sample is released once.
    let got = HostSubscriber::receive(&mut st.resmem(), sb())
        .unwrap()
        .unwrap()
        .expect("a sample");
    assert_eq!((got.offset, got.len), (l2, 64));
    assert_eq!(
        HostSubscriber::read(&mut st.resmem(), sb(), got.offset, 0, 64)
            .unwrap()
            .unwrap(),
        bytes
    );
    assert!(matches!(
        HostSubscriber::read(&mut st.resmem(), sb(), got.offset, 1, 64).unwrap(),
        Err(WitError::InvalidOffset(_))
    ));
    assert!(matches!(
        HostSubscriber::receive(&mut st.resmem(), sb()).unwrap(),
        Err(WitError::QuotaExceeded(_))
    ));
    assert_eq!(st.usage().borrowed, 1);
    HostSubscriber::release(&mut st.resmem(), sb(), got.offset)
        .unwrap()
        .unwrap();
    assert!(matches!(
        HostSubscriber::release(&mut st.resmem(), sb(), got.offset).unwrap(),
        Err(WitError::InvalidOffset(_))
    ));
    assert!(matches!(
        HostSubscriber::read(&mut st.resmem(), sb(), got.offset, 0, 1).unwrap(),
        Err(WitError::InvalidOffset(_))
    ));
    let second = HostSubscriber::receive(&mut st.resmem(), sb())
        .unwrap()
        .unwrap()
        .expect("the second");
    assert_eq!(second.offset, l3);
    // A publisher's offset is not the subscriber's to release, nor a sample the publisher's.
    assert!(matches!(
        HostPublisher::discard(&mut st.resmem(), pb(), second.offset).unwrap(),
        Err(WitError::InvalidOffset(_))
    ));
    HostSubscriber::release(&mut st.resmem(), sb(), second.offset)
        .unwrap()
        .unwrap();
    assert_eq!(
        HostSubscriber::receive(&mut st.resmem(), sb())
            .unwrap()
            .unwrap(),
        None
    );
    assert!(HostSubscriber::is_publisher_alive(&mut st.resmem(), sb()).unwrap());

    // Dropping the publisher: the subscriber drains, then sees `disconnected`.
    HostPublisher::drop(&mut st.resmem(), p).unwrap();
    assert_eq!(st.usage().publishers, 0);
    assert!(!HostSubscriber::is_publisher_alive(&mut st.resmem(), sb()).unwrap());
    assert_eq!(
        HostSubscriber::receive(&mut st.resmem(), sb()).unwrap(),
        Err(WitError::Disconnected)
    );
    HostSubscriber::drop(&mut st.resmem(), s).unwrap();
    assert_eq!(st.usage(), resmem_host::Usage::default());

    // The channel's own limits: limit-reached, saying which.
    let p = HostPublisher::create(&mut st.resmem(), "c".into(), channel_config(1, 1))
        .unwrap()
        .unwrap();
    let pb = || Resource::<resmem_host::GuestPublisher>::new_borrow(p.rep());
    let held = HostPublisher::loan(&mut st.resmem(), pb(), small)
        .unwrap()
        .unwrap();
    match HostPublisher::loan(&mut st.resmem(), pb(), small).unwrap() {
        Err(WitError::LimitReached(which)) => assert!(which.starts_with("loans"), "{which}"),
        other => panic!("{other:?}"),
    }
    HostPublisher::discard(&mut st.resmem(), pb(), held)
        .unwrap()
        .unwrap();
    HostPublisher::drop(&mut st.resmem(), p).unwrap();

    // The memory hint is judged as `memory.create` judges it: an alignment above the page
    // size is `invalid-layout`, a first segment beyond the shared-memory quota
    // `quota-exceeded` (neither a channel-configuration error nor `io`), and nothing is left.
    let mut aligned = channel_config(1, 1);
    aligned.memory.max_chunk_layout_hint = WitLayout {
        size: 64,
        align: 1 << 20,
    };
    let refused = HostPublisher::create(&mut st.resmem(), "d".into(), aligned).unwrap();
    assert!(
        matches!(refused, Err(WitError::InvalidLayout(_))),
        "{refused:?}"
    );
    let mut huge = channel_config(1, 1);
    huge.memory.max_chunk_layout_hint = WitLayout {
        size: 1 << 20,
        align: 8,
    };
    huge.memory.max_number_of_chunks_hint = 4096;
    let refused = HostPublisher::create(&mut st.resmem(), "d".into(), huge).unwrap();
    assert!(
        matches!(refused, Err(WitError::QuotaExceeded(_))),
        "{refused:?}"
    );
    assert!(matches!(
        HostSubscriber::open(&mut st.resmem(), "d".into(), 0).unwrap(),
        Err(WitError::DoesNotExist)
    ));
    assert_eq!(st.usage(), resmem_host::Usage::default());
    drop(state);
    assert_empty(&scope);
}

/// A hostile native publisher process forges queue entries (no such segment, past the
/// payload, 2^55, a huge length, straddling the payload's end, a wrong sample index) and
/// scribbles the queue's indices; a guest's subscriber gets `io` errors for those (the host
/// never traps, never maps them) and every honest sample in between, byte for byte.
#[test]
fn a_hostile_publisher_cannot_hurt_a_guest_subscriber() {
    const SEED: u64 = 77;
    let scope = Scope::new("gchhost");
    let mut hostile = peer(&scope, "hostile-publish", "svc", &["--seed", "77"]);
    assert_eq!(hostile.line(STEP), "created");
    let mut state = GuestState::new(
        WasiCtxBuilder::new().build(),
        Arc::new(policy(&scope, Quotas::default())),
    );
    let st = &mut state;
    let s = HostSubscriber::open(&mut st.resmem(), "svc".into(), 30_000)
        .unwrap()
        .unwrap();
    let sb = || Resource::<resmem_host::GuestSubscriber>::new_borrow(s.rep());
    assert_eq!(hostile.line(STEP), "subscribers 1");
    let mut n = 0u64;
    let valid = |st: &mut GuestState, hostile: &mut Peer, n: &mut u64| {
        hostile.send("valid");
        let sent = hostile.line(STEP);
        assert!(sent.starts_with(&format!("sent {n} ")), "{sent}");
        let got = HostSubscriber::receive(&mut st.resmem(), sb())
            .unwrap()
            .unwrap()
            .expect("a valid sample");
        let bytes = HostSubscriber::read(&mut st.resmem(), sb(), got.offset, 0, got.len)
            .unwrap()
            .unwrap();
        assert_eq!(resmem_e2e::sample::check_sample(&bytes, SEED), Ok(*n));
        HostSubscriber::release(&mut st.resmem(), sb(), got.offset)
            .unwrap()
            .unwrap();
        *n += 1;
    };
    valid(st, &mut hostile, &mut n);
    for kind in ["segment", "offset", "far", "len", "straddle"] {
        hostile.send(&format!("forge {kind}"));
        assert_eq!(hostile.line(STEP), format!("forged {kind}"));
        n += 1;
        match HostSubscriber::receive(&mut st.resmem(), sb()).unwrap() {
            Err(WitError::Io(why)) => assert!(why.contains("corrupted"), "{kind}: {why}"),
            other => panic!("{kind}: {other:?}"),
        }
        assert_eq!(st.usage().borrowed, 0, "{kind}");
        valid(st, &mut hostile, &mut n);
    }
    for how in ["ahead", "behind", "huge"] {
        hostile.send(&format!("indices {how}"));
        assert_eq!(hostile.line(STEP), format!("scribbled {how}"));
        assert!(
            matches!(
                HostSubscriber::receive(&mut st.resmem(), sb()).unwrap(),
                Err(WitError::Io(_))
            ),
            "{how}"
        );
        hostile.send("restore");
        assert_eq!(hostile.line(STEP), "restored");
        valid(st, &mut hostile, &mut n);
    }
    HostSubscriber::drop(&mut st.resmem(), s).unwrap();
    assert_eq!(st.usage(), resmem_host::Usage::default());
    hostile.send("exit");
    assert_eq!(hostile.line(STEP), "dropped");
    assert!(hostile.wait(STEP).success());
    drop(state);
    assert_empty(&scope);
}

/// The bench guest's echo (the peer of `cargo bench -p resmem-host --bench guest_channel`)
/// answers every native message with the same sequence number, every byte read and written,
/// by copy and in place, spinning and asleep in `wasi:io/poll`, and stamps each message.
#[test]
fn bench_guest_echoes_native_messages_by_copy_and_in_place() {
    const QUIT: u64 = u64::MAX;
    // The native channel bench's format: every byte the sequence number's low byte, the
    // first 8 bytes the whole number.
    fn message(size: usize, seq: u64) -> Vec<u8> {
        let mut buf = vec![seq as u8; size];
        buf[..8].copy_from_slice(&seq.to_le_bytes());
        buf
    }
    for (size, access, wait) in [
        (64, "copy", "spin"),
        (64, "map", "poll"),
        (MIB + 3, "copy", "poll"),
        (MIB + 3, "map", "spin"),
    ] {
        let scope = Scope::new(&format!("gbe{access}{wait}"));
        let host = host(&scope);
        let config = scope.config();
        let ping = Publisher::builder("ping")
            .config(&config)
            .max_chunk_layout_hint(std::alloc::Layout::from_size_align(size, 8).unwrap())
            .create()
            .expect("a native publisher");
        let size_arg = size.to_string();
        let mut guest = Running::start(
            &host,
            &load(&host, resmem_guests::BENCH_WASM),
            &["bench", "echo", "ping", "pong", &size_arg, access, wait],
        );
        assert!(guest.until_ready().is_empty());
        let pong = resmem::Subscriber::builder("pong")
            .config(&config)
            .timeout(STEP)
            .open()
            .expect("subscribe to the guest");
        wait_subscribers(&ping, 1);
        let count = 20u64;
        for seq in (0..count).chain([QUIT]) {
            assert_eq!(ping.send_copy(&message(size, seq)).expect("send"), 1);
            let answer = pong
                .receive_timeout(STEP)
                .expect("receive")
                .expect("an answer within a step");
            assert!(
                answer.payload() == message(size, seq),
                "answer {seq} ({access}, {wait})"
            );
        }
        drop(pong);
        let end = guest.finish();
        assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
        let (done, stamps) = end.stdout.split_last().expect("output");
        assert_eq!(done, "done");
        let stamps: Vec<u64> = stamps
            .iter()
            .flat_map(|line| {
                line.strip_prefix("stamps ")
                    .unwrap_or_else(|| panic!("{line:?}"))
                    .split(' ')
                    .map(|s| s.parse::<u64>().expect("a stamp"))
            })
            .collect();
        assert_eq!(stamps.len() as u64, count + 1);
        // Wall-clock nanoseconds (after 2017).
        assert!(
            stamps.iter().all(|&ns| ns > 1_500_000_000_000_000_000),
            "{stamps:?}"
        );
        drop(ping);
        assert_empty(&scope);
    }
}
