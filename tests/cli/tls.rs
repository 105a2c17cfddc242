//! TLS wherever a deployment needs it, against real TLS servers with certificates the harness
//! makes itself: Redis over `rediss://` with `--ca-cert` (agents: `reliability::https_…`).

use super::*;

fn recover_with(db: &TrinityDb, fleet: &Fleet, redis_url: &str, extra: &[&str]) -> Out {
    recover_with_env(db, fleet, redis_url, extra, &[])
}

fn recover_with_env(
    db: &TrinityDb,
    fleet: &Fleet,
    redis_url: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Out {
    let template = fleet.template();
    let mut command = command();
    command.args(["recover", "--apply", "-o", "json", "--agent-url", &template]);
    command
        .args(["--redis-url", redis_url])
        .args(db.args())
        .args(extra);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    Out::from(output)
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

    // --ca-cert adds to the system's roots, never replaces them (here the system's roots are
    // the harness CA, through SSL_CERT_FILE), and leaves a plain redis:// URL plain.
    let other = TestCa::new();
    let other_pem = other.ca_pem.to_str().unwrap();
    let out = recover_with_env(
        &db,
        &fleet,
        &redis.tls_url(),
        &["--ca-cert", other_pem],
        &[("SSL_CERT_FILE", ca_cert)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = recover_with(&db, &fleet, &redis.url(), &["--ca-cert", ca_cert]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // Without the CA, or with another one: exit 1, one line naming the certificate problem, and
    // no password in it.
    let with_password = redis
        .tls_url()
        .replace("rediss://", "rediss://:tls-S3KRIT@");
    for extra in [&[][..], &["--ca-cert", other.ca_pem.to_str().unwrap()][..]] {
        let out = recover_with(&db, &fleet, &with_password, extra);
        assert!(!out.stderr.contains("tls-S3KRIT"), "{}", out.stderr);
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
    // An empty TRINITY_CA_CERT, or empty entries in it, mean no extra roots.
    for value in ["", ":", "::"] {
        let output = command()
            .args(["scan", "--no-redis", "--db", db.path()])
            .args(["--agent-url", "http://127.0.0.1:1/{agent}"])
            .env("TRINITY_CA_CERT", value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{value:?}: {output:?}");
    }
}

#[test]
fn postgres_speaks_tls_with_libpqs_sslmodes() {
    // The server's certificate names only "localhost": reached as 127.0.0.1, the host is wrong.
    let ca = TestCa::for_names(&["localhost"]);
    let Some(server) = PgTlsServer::start(&ca) else {
        panic!("PostgreSQL's server binaries must be installed (.ci/run installs them)");
    };
    server.execute(&postgres_schema());
    server.execute(&format!(
        "INSERT INTO schedule_executions (id, schedule_id, agent_name, status, started_at, message, triggered_by) \
         VALUES ('x-1', '__manual__', 'alpha', 'running', '{}', 'm', 'schedule')",
        ago(60)
    ));
    let fleet = Fleet::start();
    fleet.set("alpha", FakeAgent::running(&["x-1"]));
    let template = fleet.template();
    let ca_pem = ca.ca_pem.to_str().unwrap().to_owned();
    let other = TestCa::new();
    let other_pem = other.ca_pem.to_str().unwrap().to_owned();
    let scan = |host: &str, query: &str, env: &[(&str, &str)], extra: &[&str]| {
        let url = format!(
            "postgres://postgres:pg-S3KRIT@{host}:{}/postgres{query}",
            server.port
        );
        let mut command = command();
        command.args([
            "scan",
            "-o",
            "json",
            "--no-redis",
            "--database-url",
            &url,
            "--agent-url",
            &template,
        ]);
        command.args(extra);
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        let out = Out::from(output);
        assert!(
            !out.stderr.contains("pg-S3KRIT") && !out.stdout.contains("pg-S3KRIT"),
            "{}",
            out.stderr
        );
        out
    };
    let works = |out: Out| {
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.items(), [item("x-1", "healthy", "none", "null")]);
    };
    let fails = |out: Out, why: &str| {
        assert_eq!(out.code, 1, "{}", out.stdout);
        assert!(out.stderr.contains(why), "{why}: {}", out.stderr);
        assert_eq!(
            out.stderr.trim().lines().count(),
            1,
            "one line: {}",
            out.stderr
        );
    };
    // The default (prefer) and require encrypt without checking the certificate.
    works(scan("127.0.0.1", "", &[], &[]));
    works(scan("127.0.0.1", "?sslmode=require", &[], &[]));
    // verify-full with the right CA and the certificate's host name; the CA from --ca-cert too.
    works(scan(
        "localhost",
        &format!("?sslmode=verify-full&sslrootcert={ca_pem}"),
        &[],
        &[],
    ));
    works(scan(
        "localhost",
        "?sslmode=verify-full",
        &[],
        &["--ca-cert", &ca_pem],
    ));
    // verify-ca checks the chain, not the host name.
    works(scan(
        "127.0.0.1",
        &format!("?sslmode=verify-ca&sslrootcert={ca_pem}"),
        &[],
        &[],
    ));
    // libpq's environment variables, overridden by the URL.
    works(scan(
        "localhost",
        "",
        &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", &ca_pem)],
        &[],
    ));
    fails(
        scan(
            "localhost",
            "?sslmode=disable",
            &[("PGSSLMODE", "verify-full")],
            &[],
        ),
        "no encryption",
    );
    // The wrong CA, the wrong host, and no TLS against a server that requires it.
    fails(
        scan(
            "localhost",
            &format!("?sslmode=verify-full&sslrootcert={other_pem}"),
            &[],
            &[],
        ),
        "UnknownIssuer",
    );
    fails(
        scan(
            "127.0.0.1",
            &format!("?sslmode=verify-full&sslrootcert={ca_pem}"),
            &[],
            &[],
        ),
        "certificate not valid for name",
    );
    fails(
        scan("127.0.0.1", "?sslmode=disable", &[], &[]),
        "no encryption",
    );
    // sslrootcert pins the roots, as in libpq: --ca-cert does not widen them.
    fails(
        scan(
            "localhost",
            &format!("?sslmode=verify-full&sslrootcert={other_pem}"),
            &[],
            &["--ca-cert", &ca_pem],
        ),
        "UnknownIssuer",
    );
    // Other parameters reach the server exactly as written (a space in `options` included).
    fails(
        scan(
            "127.0.0.1",
            "?options=-c%20search_path%3Dnowhere&sslmode=require",
            &[],
            &[],
        ),
        "no table schedule_executions",
    );
    fails(
        scan("127.0.0.1", "?sslmode=bogus", &[], &[]),
        "is not one of",
    );
}
