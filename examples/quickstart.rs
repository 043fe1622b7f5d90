//! Wakes an actor, writes to its database, sleeps it, wakes it again and
//! reads the data back, printing what each step cost.
//!
//!     cargo run --release --example quickstart

use std::sync::Arc;
use std::time::Instant;

use wasqlite::{Host, MemoryKv, Migrations, params};

#[tokio::main]
async fn main() -> Result<(), wasqlite::Error> {
    let kv = Arc::new(MemoryKv::new());
    let schema = Migrations::new(["CREATE TABLE visits(id INTEGER PRIMARY KEY, who TEXT NOT NULL, at TEXT NOT NULL)"]);
    let start = Instant::now();
    let host = Host::with_config(kv.clone(), wasqlite::HostConfig { migrations: schema, ..Default::default() })?;
    println!(
        "host ready in {:?} (guest code {})",
        start.elapsed(),
        if host.code_from_cache() { "loaded from the disk cache" } else { "compiled" }
    );

    let t = Instant::now();
    let mut actor = host.wake("guestbook").await?;
    println!("woke actor {} in {:?}", actor.id(), t.elapsed());
    for who in ["ada", "grace", "edsger"] {
        actor.execute("INSERT INTO visits(who, at) VALUES (?1, datetime('now'))", params![who]).await?;
    }
    println!("wrote 3 rows; instance holds {} KiB of linear memory", actor.memory_bytes() / 1024);
    actor.sleep().await?;
    println!("slept: {} live instances", host.live_instances());

    let t = Instant::now();
    let mut actor = host.wake("guestbook").await?;
    let rows = actor.query("SELECT id, who, at FROM visits ORDER BY id", ()).await?;
    println!("woke again and queried in {:?}:", t.elapsed());
    for row in &rows {
        println!("  {} {:<8} {}", row.get::<i64>(0)?, row.get::<String>(1)?, row.get::<String>(2)?);
    }
    actor.sleep().await?;

    let keys = kv.keys(&wasqlite::ActorId::new("guestbook")?);
    println!("the database lives in {} KV keys", keys.len());
    Ok(())
}
