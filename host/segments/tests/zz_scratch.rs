use resmem::{Config, Publisher, Subscriber};
use std::alloc::Layout;
use std::time::Instant;
#[test]
fn scratch() {
    let config = Config::default().prefix(&format!("scr{}_", std::process::id()));
    let p = Publisher::builder("s").config(&config).create().unwrap();
    let s = Subscriber::builder("s").config(&config).open().unwrap();
    let layout = Layout::from_size_align(64, 8).unwrap();
    for round in 0..3 {
        let n = 200_000;
        let t = Instant::now();
        for _ in 0..n {
            let mut l = p.loan(layout).unwrap();
            l.payload_mut()[0] = 1;
            l.send().unwrap();
            let x = s.receive().unwrap().unwrap();
            std::hint::black_box(x.payload()[0]);
        }
        println!(
            "round {round}: {:.1} ns/cycle",
            t.elapsed().as_nanos() as f64 / n as f64
        );
    }
    let n = 200_000;
    let t = Instant::now();
    for _ in 0..n {
        drop(p.loan(layout).unwrap());
    }
    println!(
        "loan+drop: {:.1} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        let c = p.memory().allocate(layout).unwrap();
        p.memory().try_deallocate(c.offset).unwrap();
    }
    println!(
        "alloc+free: {:.1} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
}
