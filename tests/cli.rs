//! The command line: account management, configuration layering, migrations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn cpm(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cpm-nms"))
        .args(["--data-dir", dir.to_str().expect("utf8")])
        .args(args)
        .env_remove("NMS__AUTH__CURSOR_SECRET")
        .output()
        .expect("run cpm-nms")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn accounts_are_added_listed_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = cpm(
        dir.path(),
        &[
            "account",
            "add",
            "--name",
            "alice",
            "--box",
            "tel:+12125551212",
            "--box",
            "tel:+12125550000",
            "--password",
            "pw",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut child = Command::new(env!("CARGO_BIN_EXE_cpm-nms"))
        .args([
            "--data-dir",
            dir.path().to_str().expect("utf8"),
            "account",
            "add",
            "--name",
            "pf",
            "--service",
            "--box",
            "tel:+1",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().expect("stdin").write_all(b"from-stdin\n").expect("write");
    assert!(child.wait_with_output().expect("wait").status.success());

    let list = stdout(&cpm(dir.path(), &["account", "list"]));
    assert!(list.contains("alice\tuser\tbase/tel:+12125550000,base/tel:+12125551212"), "{list}");
    assert!(list.contains("pf\tservice\tbase/tel:+1"), "{list}");

    let dup = cpm(dir.path(), &["account", "add", "--name", "alice", "--box", "tel:+1", "--password", "x"]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let bad_store =
        cpm(dir.path(), &["account", "add", "--name", "z", "--box", "tel:+1", "--store", "nope", "--password", "x"]);
    assert!(!bad_store.status.success());
    let no_pw = cpm(dir.path(), &["account", "add", "--name", "z", "--box", "tel:+1"]);
    assert!(!no_pw.status.success());

    assert!(cpm(dir.path(), &["account", "remove", "--name", "alice"]).status.success());
    assert!(!cpm(dir.path(), &["account", "remove", "--name", "alice"]).status.success());
    assert!(!stdout(&cpm(dir.path(), &["account", "list"])).contains("alice"));
    // Passwords are stored as argon2 hashes, never in clear.
    let mut db = std::fs::read(dir.path().join("nms.db")).expect("db");
    db.extend(std::fs::read(dir.path().join("nms.db-wal")).unwrap_or_default());
    let text = String::from_utf8_lossy(&db);
    assert!(text.contains("$argon2id$") && !text.contains("from-stdin"));
}

#[test]
fn config_layers_file_then_environment_then_flags_and_redacts_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("nms.toml");
    std::fs::write(&file, "[server]\nlisten = \"0.0.0.0:9000\"\npublic_url = \"https://nms.example.com\"\n[nms]\nstores = [\"myStore\", \"base\"]\n[limits]\nmax_body_bytes = 1000\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_cpm-nms"))
        .args(["--config", file.to_str().expect("utf8"), "--data-dir", "/tmp/flag-dir", "config"])
        .env("NMS__LIMITS__MAX_BODY_BYTES", "2000")
        .env("NMS__AUTH__CURSOR_SECRET", "very-secret")
        .env("NMS__STORAGE__DATABASE_URL", "sqlite:///tmp/x.db")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = stdout(&out);
    assert!(s.contains("listen = \"0.0.0.0:9000\""), "{s}");
    assert!(s.contains("public_url = \"https://nms.example.com\""));
    assert!(s.contains("stores = [\n    \"myStore\",\n    \"base\",\n]") || s.contains("\"myStore\""), "{s}");
    assert!(s.contains("max_body_bytes = 2000"), "environment beats the file: {s}");
    assert!(s.contains("data_dir = \"/tmp/flag-dir\""), "flags beat everything: {s}");
    assert!(s.contains("cursor_secret = \"<redacted>\"") && !s.contains("very-secret"), "{s}");
    // A missing file and an invalid value are errors, not silent defaults.
    let out = cpm(dir.path(), &["--config", "/nonexistent.toml", "config"]);
    assert!(!out.status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_cpm-nms"))
        .args(["config"])
        .env("NMS__SERVER__PUBLIC_URL", "ftp://x")
        .output()
        .expect("run");
    assert!(!out.status.success());
}

#[test]
fn migrate_creates_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = cpm(dir.path(), &["migrate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("nms.db").exists());
    assert!(cpm(dir.path(), &["migrate"]).status.success(), "idempotent");
}

#[test]
fn expiry_policies_are_configured_per_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("nms.toml");
    std::fs::write(&file, "[sync.retention.base]\nmax_age_secs = 7776000\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_cpm-nms"))
        .args(["--config", file.to_str().expect("utf8"), "--data-dir", dir.path().to_str().expect("utf8"), "config"])
        .env("NMS__SYNC__RETENTION__BASE__MAX_OBJECTS", "5000")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = stdout(&out);
    assert!(s.contains("[sync.retention.base]"), "{s}");
    assert!(s.contains("max_age_secs = 7776000"), "{s}");
    assert!(s.contains("max_objects = 5000"), "{s}");
}

#[test]
fn limits_and_tls_settings_load_and_are_validated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("nms.toml");
    std::fs::write(
        &file,
        "[server]\ntls_cert = \"/etc/nms/chain.pem\"\ntls_key = \"/etc/nms/key.pem\"\n[limits]\nrate_per_sec = 2.5\nmax_part_bytes = 4096\n",
    )
    .expect("write");
    let config = |envs: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cpm-nms"));
        c.args(["--config", file.to_str().expect("utf8"), "--data-dir", dir.path().to_str().expect("utf8"), "config"]);
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().expect("run")
    };
    let out = config(&[("NMS__LIMITS__MAX_POLLS_PER_PRINCIPAL", "3"), ("NMS__LIMITS__RATE_BURST", "7")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = stdout(&out);
    for want in [
        "tls_cert = \"/etc/nms/chain.pem\"",
        "tls_key = \"/etc/nms/key.pem\"",
        "rate_per_sec = 2.5",
        "rate_burst = 7",
        "max_part_bytes = 4096",
        "max_polls_per_principal = 3",
        "max_subscriptions_per_box = 100",
        "max_search_criteria = 64",
    ] {
        assert!(s.contains(want), "{want} in {s}");
    }
    // An integer rate from the environment is a rate too.
    assert!(config(&[("NMS__LIMITS__RATE_PER_SEC", "3")]).status.success());
    // A negative rate, rate limiting without a burst, and half a TLS configuration are errors.
    for envs in [vec![("NMS__LIMITS__RATE_PER_SEC", "-1")], vec![("NMS__LIMITS__RATE_BURST", "0")]] {
        let out = config(&envs);
        assert!(!out.status.success(), "{envs:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("limits.rate_"), "{envs:?}");
    }
    std::fs::write(&file, "[server]\ntls_cert = \"/etc/nms/chain.pem\"\n").expect("write");
    let out = config(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls_key"));
}

#[test]
fn the_first_command_makes_the_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("not-yet");
    let out = cpm(&data, &["account", "add", "--name", "alice", "--box", "tel:+1", "--password", "pw"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(data.join("cursor.key").exists() && data.join("nms.db").exists());
}
