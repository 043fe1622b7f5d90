//! `wasqlite bench churn` and `wasqlite bench sql` end to end, at tiny
//! sizes: they run, and their JSON has every figure with a sane value.
//! Nothing here asserts speed; BENCHMARKS.md does that with release builds.

use assert_cmd::cargo::cargo_bin_cmd;
use serde_json::Value;

/// Runs `wasqlite <args>`, which must succeed and print one JSON object.
fn json(args: &[&str]) -> Value {
    let out = cargo_bin_cmd!("wasqlite").args(args).output().unwrap();
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Whether `bench churn`, in a fresh process with its code cache in `dir`,
/// loaded the guest's compiled code from there.
fn churn_code_from_cache(dir: &std::path::Path) -> bool {
    let args = ["bench", "churn", "--actors", "1", "--cycles", "1", "--awake", "0", "--no-native", "--json"];
    let out = cargo_bin_cmd!("wasqlite").args(args).env("WASQLITE_CACHE_DIR", dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["code_from_cache"].as_bool().unwrap()
}

/// The cache files in `dir`: (name, contents).
fn cache_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    files
}

/// The compiled guest is cached in one file named by its CRC-32, which the
/// next process maps instead of compiling; a damaged file is not loaded,
/// and the recompiled code takes its place.
#[test]
fn the_code_cache_is_used_and_a_damaged_file_replaced() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!churn_code_from_cache(dir.path()), "an empty cache");
    let files = cache_files(dir.path());
    assert_eq!(files.len(), 1, "{:?}", files.iter().map(|f| &f.0).collect::<Vec<_>>());
    let (name, bytes) = &files[0];
    let crc = format!("-{:08x}.cwasm", crc32fast::hash(bytes));
    assert!(name.starts_with("wasqlite-") && name.ends_with(&crc), "{name} should end with {crc}");

    assert!(churn_code_from_cache(dir.path()), "the second process compiles again");
    assert_eq!(cache_files(dir.path()), files, "a loaded cache file is left as it was");

    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x40;
    std::fs::write(dir.path().join(name), &damaged).unwrap();
    assert!(!churn_code_from_cache(dir.path()), "a damaged cache file was loaded");
    assert_eq!(cache_files(dir.path()), files, "the recompiled code replaces the damaged file");
    assert!(churn_code_from_cache(dir.path()));
}

/// The number at `path`, which must exist.
fn num(v: &Value, path: &str) -> f64 {
    let mut at = v;
    for key in path.split('.') {
        at = at.get(key).unwrap_or_else(|| panic!("no {path} in {v:#}"));
    }
    at.as_f64().unwrap_or_else(|| panic!("{path} is not a number in {v:#}"))
}

/// Whether the system has a TrueType font for the plot's labels (the base
/// image ships DejaVu; `--plot` fails with a clear error without one).
fn has_font() -> bool {
    fn walk(dir: &std::path::Path, depth: usize) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else { return false };
        entries.filter_map(|e| e.ok()).map(|e| e.path()).any(|p| {
            p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ttf"))
                || (depth > 0 && p.is_dir() && walk(&p, depth - 1))
        })
    }
    walk(std::path::Path::new("/usr/share/fonts"), 4)
}

#[test]
fn churn_reports_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("churn.svg");
    let mut args = vec!["bench", "churn", "--actors", "3", "--cycles", "20", "--json"];
    let plotting = has_font();
    if plotting {
        args.extend(["--plot", plot.to_str().unwrap()]);
    } else {
        eprintln!("no TrueType font under /usr/share/fonts: not checking --plot");
    }
    let v = json(&args);

    assert_eq!(num(&v, "actors"), 3.0);
    assert_eq!(num(&v, "tables"), 10.0);
    assert_eq!(num(&v, "cycles"), 20.0);
    assert_eq!(v["store"], "memory");
    assert!(num(&v, "cycles_per_s") > 0.0);
    for histogram in ["wake_us", "write_us", "sleep_us"] {
        assert_eq!(num(&v, &format!("{histogram}.count")), 20.0, "{histogram}");
        let (p50, p99, p999) = (
            num(&v, &format!("{histogram}.p50")),
            num(&v, &format!("{histogram}.p99")),
            num(&v, &format!("{histogram}.p999")),
        );
        assert!(p50 >= 1.0 && p50 <= p99 && p99 <= p999, "{histogram}: {p50} {p99} {p999}");
    }

    // RSS: plausible sizes, and a peak no lower than what was sampled.
    let baseline = num(&v, "rss.baseline_bytes");
    assert!(baseline > 1e6 && baseline < 64e9, "baseline {baseline}");
    assert!(num(&v, "rss.peak_bytes") >= num(&v, "rss.end_bytes"));
    assert!(num(&v, "rss.final_bytes") > 0.0);
    assert_eq!(num(&v, "rss.drift_bytes"), num(&v, "rss.end_bytes") - num(&v, "rss.warmup_end_bytes"));
    assert_eq!(num(&v, "rss.warmup_cycles"), 2.0, "10% of 20 cycles");
    assert!(num(&v, "rss.samples") >= 2.0);

    // Linear memory: some while awake, none once every actor sleeps.
    assert_eq!(num(&v, "linear_memory.peak_live_instances"), 1.0);
    assert!(num(&v, "linear_memory.peak_live_bytes") > 0.0);
    assert_eq!(num(&v, "linear_memory.all_asleep_bytes"), 0.0);
    assert_eq!(num(&v, "linear_memory.all_asleep_instances"), 0.0);
    assert_eq!(num(&v, "sleeping_actor_linear_memory_bytes"), 0.0);

    // --awake 100 by default, capped at the 3 actors there are.
    assert_eq!(num(&v, "awake.held"), 3.0);
    assert_eq!(num(&v, "awake.live_instances"), 3.0);
    assert!(num(&v, "awake.linear_memory_per_actor_bytes") >= 65536.0);
    assert!(num(&v, "awake.rss_held_bytes") > 0.0);

    if plotting {
        let svg = std::fs::read_to_string(&plot).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("live instances"), "{}", &svg[..svg.len().min(200)]);
    }

    // The native reference ran once per cycle, and the ratio is the two
    // medians' quotient.
    assert_eq!(num(&v, "native.databases"), 3.0);
    assert_eq!(num(&v, "native.wake_us.count"), 20.0);
    assert_eq!(num(&v, "native.close_us.count"), 20.0);
    assert_eq!(v["native"]["memstatus"], "off");
    let expected = num(&v, "wake_us.p50") / num(&v, "native.wake_us.p50");
    assert!((num(&v, "native.wake_p50_ratio") - expected).abs() < 1e-3 * expected.max(1.0), "{:#}", v["native"]);

    let skipped = json(&["bench", "churn", "--actors", "2", "--cycles", "4", "--awake", "0", "--no-native", "--json"]);
    assert!(skipped["native"].is_null(), "{:#}", skipped["native"]);
}

#[test]
fn sql_compares_with_native() {
    let v = json(&[
        "bench",
        "sql",
        "--workload",
        "point-select",
        "--rows",
        "200",
        "--json",
        "--rounds",
        "2",
        "--seconds",
        "0.05",
    ]);
    assert_eq!(num(&v, "rows"), 200.0);
    let natives = ["native-memory", "native-file"];
    for backend in ["memory", "redb", natives[0], natives[1]] {
        assert!(v["sqlite_version"][backend].as_str().unwrap().starts_with("3."), "{backend}: {v:#}");
    }
    assert_eq!(v["sqlite_version"]["memory"], v["sqlite_version"]["native-memory"]);
    assert_eq!(v["native_memstatus"], "off");

    // The configuration table, as each side reported it.
    let config = &v["configuration"];
    for backend in ["memory", "redb", natives[0], natives[1]] {
        assert_eq!(config[backend]["page_size"], "4096", "{backend}: {config:#}");
        assert_eq!(config[backend]["locking_mode"], "exclusive", "{backend}");
        assert_eq!(config[backend]["foreign_keys"], "0", "{backend}");
    }
    assert_eq!(config["memory"]["synchronous"], "2");
    assert_eq!(config["native-memory"]["synchronous"], "2");
    assert_eq!(config["native-memory"]["journal_mode"], "memory");
    assert_eq!(config["native-file"]["journal_mode"], "delete");
    let only = |backend: &str| -> Vec<String> {
        serde_json::from_value(config[backend]["compile_options_only_here"].clone()).unwrap()
    };
    assert!(only("memory").contains(&"THREADSAFE=0".to_owned()), "{:?}", only("memory"));
    assert!(only("native-memory").contains(&"THREADSAFE=1".to_owned()), "{:?}", only("native-memory"));
    let workloads = v["workloads"].as_array().unwrap();
    assert_eq!(workloads.len(), 1);
    let w = &workloads[0];
    assert_eq!(w["name"], "point-select");
    assert_eq!(w["unit"], "ops_per_s");
    for backend in ["memory", "redb", natives[0], natives[1]] {
        assert!(num(w, &format!("results.{backend}.median")) > 0.0, "{backend}");
        assert_eq!(w["results"][backend]["rounds"].as_array().unwrap().len(), 2);
    }
    // A ratio is the median over rounds of wasqlite's figure over the
    // reference's in the same round.
    for reference in natives {
        for backend in ["memory", "redb"] {
            let ratio = num(w, &format!("ratio_to.{reference}.{backend}"));
            let rounds = |b: &str| -> Vec<f64> { serde_json::from_value(w["results"][b]["rounds"].clone()).unwrap() };
            let per_round: Vec<f64> = rounds(backend).iter().zip(rounds(reference)).map(|(a, b)| a / b).collect();
            let expected = (per_round[0] + per_round[1]) / 2.0;
            assert!((ratio - expected).abs() <= 0.002 + 0.01 * expected, "{reference}/{backend}: {ratio} vs {expected}");
        }
        for native in natives {
            assert!(w["ratio_to"][reference].get(native).is_none(), "{reference}/{native}");
        }
    }
}

#[test]
fn sql_mixed_agrees_with_native() {
    // The mixed workload fails if wasqlite's results differ from native's.
    let v = json(&[
        "bench",
        "sql",
        "--workload",
        "mixed",
        "--rows",
        "200",
        "--json",
        "--rounds",
        "1",
        "--backends",
        "memory,native-memory",
    ]);
    let w = &v["workloads"][0];
    assert_eq!(w["name"], "mixed");
    assert_eq!(w["unit"], "ms");
    let steps = w["results"]["memory"]["steps_ms"].as_object().unwrap();
    assert_eq!(steps.len(), 7);
    assert!(num(w, "ratio_to.native-memory.memory") > 0.0);
    assert!(w["ratio_to"].get("native-file").is_none(), "only the references that ran");
}

#[test]
fn bulk_insert_workloads_run_on_both_sides() {
    for workload in ["bulk-insert-25k", "bulk-insert-25k-each", "bulk-insert-25k-sql"] {
        let v = json(&["bench", "sql", "--workload", workload, "--json", "--rounds", "1", "--backends", "memory,native-memory"]);
        let w = &v["workloads"][0];
        assert_eq!(w["name"], workload);
        assert_eq!(w["unit"], "ms");
        assert!(num(w, "results.memory.median") > 0.0 && num(w, "results.native-memory.median") > 0.0, "{w:#}");
    }
}

#[test]
fn churn_reports_its_allocation() {
    let pooled = json(&["bench", "churn", "--actors", "2", "--cycles", "4", "--awake", "0", "--json"]);
    assert_eq!(pooled["pooling"], true);
    assert_eq!(num(&pooled, "keep_resident_bytes"), 1048576.0);
    let released = json(&["bench", "churn", "--actors", "2", "--cycles", "4", "--awake", "0", "--keep-resident", "0", "--json"]);
    assert_eq!(num(&released, "keep_resident_bytes"), 0.0);
    let on_demand = json(&["bench", "churn", "--actors", "2", "--cycles", "4", "--awake", "0", "--on-demand", "--json"]);
    assert_eq!(on_demand["pooling"], false);
    assert!(on_demand["pool_slots"].is_null());
}

#[test]
fn manager_reports_every_figure_and_stays_inside_the_budget() {
    let v = json(&[
        "bench", "manager", "--store", "memory", "--actors", "300", "--budget", "20", "--calls", "3000", "--concurrency", "8", "--json",
    ]);
    assert!(num(&v, "peak_awake") <= 20.0, "{v:#}");
    assert_eq!(num(&v, "failed_calls"), 0.0);
    assert_eq!(num(&v, "lost_updates"), 0.0);
    assert!(num(&v, "actors_checked") > 0.0);
    assert!(num(&v, "calls_per_s") > 0.0);
    assert!(num(&v, "call_latency_us.p99") >= num(&v, "call_latency_us.p50"));
    assert!(num(&v, "budget_sleeps") > 0.0, "300 actors through 20 awake: the budget must have slept some");
    assert!(num(&v, "guest_reported_rows_written") > 0.0);
}

/// `bench serve` starts the real server, sets up every actor, sends every
/// request and stops the server cleanly (all of which it checks itself);
/// its figures must agree with each other. 20 actors through 10 awake: the
/// timed phase must wake some again.
#[test]
fn serve_reports_every_figure() {
    let v = json(&[
        "bench", "serve", "--actors", "20", "--requests", "400", "--connections", "4", "--max-awake", "10", "--write-percent", "20", "--json",
    ]);
    assert_eq!(num(&v, "requests"), 400.0, "{v:#}");
    assert_eq!(num(&v, "failures"), 0.0);
    assert!(num(&v, "requests_per_second") > 0.0);
    assert!(num(&v, "seconds") > 0.0);
    let (p50, p90, p99, p999, max) =
        (num(&v, "latency_us.p50"), num(&v, "latency_us.p90"), num(&v, "latency_us.p99"), num(&v, "latency_us.p999"), num(&v, "latency_us.max"));
    assert!(0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max, "{v:#}");
    assert!(num(&v, "setup_wakes") >= 20.0, "every actor was woken to create its table: {v:#}");
    assert!(num(&v, "wakes") > 0.0 && num(&v, "budget_sleeps") > 0.0, "20 actors through 10 awake: {v:#}");
    assert!(num(&v, "awake_actors") <= 10.0);
    assert!(num(&v, "server_mean_us") > 0.0);
    assert_eq!((num(&v, "actors"), num(&v, "connections"), num(&v, "write_percent")), (20.0, 4.0, 20.0));
}
