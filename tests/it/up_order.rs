//! Guarantee: ordered drain. Groups stop in reverse dependency order
//! (dependents first); independent groups stop in parallel.

use crate::support::*;

#[test]
fn dependents_have_exited_before_their_dependency_is_signalled() {
    let h = Harness::new("order-chain");
    // api lingers 400 ms after SIGTERM: a runner that does not wait for it
    // would signal db while api is still alive.
    let file = h.topology(
        r#"
topology chain {
  shutdown within 30s
  group db {
    run "@PROBE@ --record @DIR@/db.rec"
    stop SIGTERM drain 5s
  }
  group api {
    run "@PROBE@ --record @DIR@/api-{index}.rec --record-exit --linger-ms 400"
    processes 3
    after db
    stop SIGTERM drain 5s
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    let started = started_and_armed(&mut up, 4);
    let api: Vec<(String, i32)> = started
        .iter()
        .filter(|(p, _)| p.starts_with("api."))
        .cloned()
        .collect();
    assert_eq!(api.len(), 3, "{started:?}");
    up.signal_group(libc::SIGINT);
    let code = up.exit_code();

    // Each api probe wrote its EXIT record just before `_exit`; db's
    // SIGTERM is timestamped in its signal handler, after the runner sent it.
    let db = read_records(&h.path("db.rec"));
    assert_eq!(db.len(), 1, "db records: {db:?}");
    for (process, _) in &api {
        let file = h.path(&format!("{}.rec", process.replace('.', "-")));
        let exit = exit_record(&file).unwrap_or_else(|| panic!("{process} has no EXIT record"));
        assert!(
            exit.ns < db[0].ns,
            "{process} was still alive {:.3} s after db got {}",
            (exit.ns - db[0].ns) as f64 / 1e9,
            db[0].sig
        );
    }
    // The runner's events agree: every api `exited` precedes db's `stopping`.
    let db_stop = up
        .events_named("stopping")
        .into_iter()
        .find(|e| e["group"] == "db")
        .expect("a stopping event for db");
    for e in up.events_named("exited") {
        if e["group"] == "api" {
            assert!(t(&e) <= t(&db_stop), "{e} after {db_stop}");
        }
    }
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
    assert!(survivors(&h.marker).is_empty());
}

#[test]
fn independent_groups_stop_in_parallel() {
    let h = Harness::new("order-parallel");
    // Each group needs its full 1 s deadline; in series the second would
    // get its SIGTERM a second after the first.
    let file = h.topology(
        r#"
topology parallel {
  shutdown within 30s
  group left {
    run "@PROBE@ --record @DIR@/left.rec --ignore SIGTERM"
    stop SIGTERM drain 1s
  }
  group right {
    run "@PROBE@ --record @DIR@/right.rec --ignore SIGTERM"
    stop SIGTERM drain 1s
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    started_and_armed(&mut up, 2);
    up.signal_group(libc::SIGINT);
    let code = up.exit_code();
    let left = read_records(&h.path("left.rec"));
    let right = read_records(&h.path("right.rec"));
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(right.len(), 1, "{right:?}");
    let apart = (left[0].ns - right[0].ns).abs() as f64 / 1e9;
    assert!(
        apart < 0.5,
        "independent groups got their stop signals {apart:.3} s apart"
    );
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
}

/// A group waits only for the groups that depend on it, not for an
/// unrelated slow group that shares its stop stage: `cache` stops as soon as
/// `worker` is down, while `api` (ignoring SIGTERM, 3 s ladder) still holds
/// `db`. Stage-by-stage draining would hold `cache` for api's 3 s, making
/// the teardown longer than the worst-case path FR203 budgets.
#[test]
fn a_chain_does_not_wait_for_an_unrelated_slow_chain() {
    let h = Harness::new("order-chains");
    let file = h.topology(
        r#"
topology chains {
  shutdown within 30s
  group db {
    run "@PROBE@ --record @DIR@/db.rec"
    stop SIGTERM drain 5s
  }
  group api {
    run "@PROBE@ --record @DIR@/api.rec --record-exit --ignore SIGTERM"
    after db
    stop SIGTERM drain 3s
  }
  group cache {
    run "@PROBE@ --record @DIR@/cache.rec"
    stop SIGTERM drain 5s
  }
  group worker {
    run "@PROBE@ --record @DIR@/worker.rec --record-exit"
    after cache
    stop SIGTERM drain 5s
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    started_and_armed(&mut up, 4);
    up.signal_group(libc::SIGINT);
    let code = up.exit_code();
    let api = read_records(&h.path("api.rec"));
    let cache = read_records(&h.path("cache.rec"));
    let db = read_records(&h.path("db.rec"));
    assert_eq!(api.len(), 1, "{api:?}");
    assert_eq!(cache.len(), 1, "{cache:?}");
    assert_eq!(db.len(), 1, "{db:?}");
    let worker_exit = exit_record(&h.path("worker.rec")).expect("worker EXIT record");
    let api_exit_ns = up
        .events_named("exited")
        .into_iter()
        .find(|e| e["group"] == "api")
        .map(|e| t(&e))
        .expect("api exited");
    assert!(
        worker_exit.ns < cache[0].ns,
        "cache was signalled before worker exited"
    );
    let cache_after_api_term = (cache[0].ns - api[0].ns) as f64 / 1e9;
    assert!(
        cache_after_api_term < 1.5,
        "cache waited {cache_after_api_term:.3} s: it was held back by api's 3 s ladder"
    );
    let db_after_api_term = (db[0].ns - api[0].ns) as f64 / 1e9;
    assert!(
        db_after_api_term >= 2.9,
        "db was signalled {db_after_api_term:.3} s after api's SIGTERM, before api's deadline (api exited at t={api_exit_ns:.3})"
    );
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
    assert!(survivors(&h.marker).is_empty());
}
