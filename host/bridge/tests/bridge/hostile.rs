//! Hostile input on the wire: a zenoh peer putting garbage on an imported key.

use std::time::{Duration, Instant};

use crate::harness::*;

/// A hostile zenoh peer puts garbage on an imported key: short messages, a wrong magic, a
/// length that disagrees with the message, the importer's own origin. Each is counted and
/// refused; well-formed messages from foreign origins (one larger than a zenoh batch, so
/// fragmented on the way; one with the largest sequence number) arrive byte for byte.
#[test]
fn an_importer_refuses_malformed_messages() {
    use resmem_bridge::wire::{HEADER, Header};
    use resmem_bridge::{Bridge, Direction};
    use zenoh::Wait;

    let ns = Namespaces::new("mf");
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let bridge = Bridge::builder()
        .config(&Namespaces::config(&ns.b))
        .import("cam")
        .listen(&endpoint)
        .multicast(false)
        .on_log(|_| {})
        .start()
        .expect("bridge");
    let own: [u8; 16] = {
        let zid = bridge.zid();
        let mut id = [0u8; 16];
        let n = u128::from_str_radix(&zid, 16).expect("hex zid");
        id.copy_from_slice(&n.to_le_bytes());
        id
    };
    let sub = subscriber(&ns.b, "cam");
    let mut config = zenoh::Config::default();
    for (key, value) in [
        ("mode", "\"peer\"".to_owned()),
        ("connect/endpoints", format!("[\"{endpoint}\"]")),
        ("scouting/multicast/enabled", "false".to_owned()),
    ] {
        config.insert_json5(key, &value).expect("zenoh config");
    }
    let session = zenoh::open(config).wait().expect("zenoh session");
    let put = |bytes: Vec<u8>| {
        session.put("resmem/cam", bytes).wait().expect("put");
    };
    let good = payload(3, 100_000);
    let header = |origin: [u8; 16], len: u64| Header {
        seq: 0,
        len,
        origin,
    };
    let last_seq = |origin: [u8; 16], len: u64| Header {
        seq: u64::MAX,
        ..header(origin, len)
    };
    // Until the bridge's subscription reaches us, puts go nowhere: send good ones until one
    // arrives.
    let deadline = Instant::now() + STEP;
    loop {
        assert!(
            Instant::now() < deadline,
            "the importer never got a message"
        );
        put(header([7; 16], good.len() as u64).encode(&good));
        if let Ok(Some(sample)) = sub.receive_timeout(Duration::from_millis(50)) {
            assert!(
                sample.payload() == &good[..],
                "the well-formed message differs"
            );
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    while let Ok(Some(_)) = sub.receive() {}
    let stats = || {
        bridge
            .stats()
            .into_iter()
            .find(|s| s.direction == Direction::Import)
            .expect("import stats")
    };
    let before = stats();
    let mut wrong_magic = header([7; 16], 4).encode(b"abcd");
    wrong_magic[0] ^= 0xff;
    // The largest sequence number is a valid one (the next expected wraps).
    put(last_seq([9; 16], 4).encode(b"wxyz"));
    put(Vec::new());
    put(vec![0x52; HEADER - 1]);
    put(wrong_magic);
    put(header([7; 16], 5).encode(b"abcd"));
    put(header([7; 16], u64::MAX).encode(b"abcd"));
    put(header(own, 4).encode(b"abcd"));
    // Then one well-formed message: everything before it was handled when it arrives.
    put(header([8; 16], good.len() as u64).encode(&good));
    let sample = sub
        .receive_timeout(STEP)
        .expect("receive")
        .expect("the message with the largest sequence number");
    assert_eq!(sample.payload(), b"wxyz");
    drop(sample);
    let sample = sub
        .receive_timeout(STEP)
        .expect("receive")
        .expect("the last well-formed message");
    assert!(
        sample.payload() == &good[..],
        "the well-formed message differs"
    );
    drop(sample);
    assert!(
        sub.receive_timeout(Duration::from_millis(200))
            .expect("receive")
            .is_none(),
        "a malformed message was published"
    );
    let after = stats();
    assert_eq!(after.malformed - before.malformed, 5, "{after:?}");
    assert_eq!(after.looped - before.looped, 1, "{after:?}");
    assert_eq!(after.samples - before.samples, 2, "{after:?}");
    drop(sub);
    drop(session);
    drop(bridge);
    ns.assert_clean();
}
