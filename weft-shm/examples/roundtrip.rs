//! Connects to a router's shared-memory socket, subscribes, publishes to
//! itself and prints what comes back, with the round trip's time.
//!
//! `cargo run -p weft-shm --example roundtrip -- /tmp/weft.sock [nats|mqtt] [count]`

use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "/tmp/weft.sock".into());
    let dialect = args.next().unwrap_or_else(|| "nats".into());
    let count: u32 = args.next().map(|c| c.parse()).transpose()?.unwrap_or(3);
    let (options, topic) = match dialect.as_str() {
        "mqtt" => (weft_shm::Options::mqtt("roundtrip"), "roundtrip/x"),
        _ => (weft_shm::Options::nats("roundtrip"), "roundtrip.x"),
    };
    let client = weft_shm::Client::connect(&path, options)?;
    client.subscribe(topic)?;
    for i in 0..count {
        let sent = Instant::now();
        client.publish(topic, format!("hello {i}").as_bytes())?;
        match client.recv_timeout(Duration::from_secs(5))? {
            Some(m) => println!(
                "{} {:?} after {:?}",
                m.topic,
                String::from_utf8_lossy(&m.payload),
                sent.elapsed()
            ),
            None => println!("nothing within 5 s"),
        }
    }
    client.unsubscribe(topic)?;
    Ok(())
}
