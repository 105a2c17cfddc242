//! TLS wherever a deployment needs it, against real TLS servers with certificates the harness
//! makes itself: Redis over `rediss://` with `--ca-cert` (agents: `reliability::https_…`).

use super::*;

fn recover_with(db: &TrinityDb, fleet: &Fleet, redis_url: &str, extra: &[&str]) -> Out {
    let template = fleet.template();
    let mut args = vec!["recover", "--apply", "-o", "json", "--agent-url", &template];
    args.extend(["--redis-url", redis_url]);
    let db_args = db.args();
    args.extend(db_args.iter().map(String::as_str));
    args.extend(extra);
    run(&args)
}

#[test]
fn rediss_speaks_tls_and_trusts_the_ca_of_ca_cert() {
    let ca = TestCa::new();
    let redis = RedisServer::start_tls(&ca).expect("redis-server with TLS");
    let db = TrinityDb::new();
    let fleet = Fleet::start();
    db.add_agent("alpha", None);
    db.add_execution("done-1", "alpha", "success", &ago(900));
    fleet.set("alpha", FakeAgent::running(&[]));
    add_slot(
        &mut redis.conn(),
        "alpha",
        "done-1",
        unix_ago(900),
        Some(60),
    );

    let ca_cert = ca.ca_pem.to_str().unwrap();
    let out = recover_with(&db, &fleet, &redis.tls_url(), &["--ca-cert", ca_cert]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.items(),
        [item("done-1", "leaked_slot", "release_slot", "applied")]
    );
    assert!(
        slot_members(&mut redis.conn(), "alpha").is_empty(),
        "released over TLS"
    );

    // Without the CA, or with another one: exit 1, one line naming the certificate problem.
    let other = TestCa::new();
    for extra in [&[][..], &["--ca-cert", other.ca_pem.to_str().unwrap()][..]] {
        let out = recover_with(&db, &fleet, &redis.tls_url(), extra);
        assert_eq!(out.code, 1, "{}", out.stderr);
        let error = out.stderr.to_lowercase();
        assert!(
            error.contains("cannot connect to redis") && error.contains("certificate"),
            "{}",
            out.stderr
        );
        assert_eq!(
            out.stderr.trim().lines().count(),
            1,
            "one line: {}",
            out.stderr
        );
    }
}

#[test]
fn a_ca_cert_that_is_not_a_certificate_is_a_clear_error() {
    let db = TrinityDb::new();
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    for path in [bogus.to_str().unwrap(), "/no/such/ca.pem"] {
        let out = run(&["scan", "--no-redis", "--db", db.path(), "--ca-cert", path]);
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(out.stderr.contains(path), "{}", out.stderr);
    }
}
