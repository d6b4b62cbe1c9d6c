//! Every setting of `serve`, walked from its one declaration: its flag,
//! its variable and its file key must each reach the resolved config, and
//! the docs must show the declaration as it is. Regenerate the docs' table
//! with `HEAPTIDE_BLESS=1 cargo test -p heaptide-analyzer --test settings`.

use clap::Parser;
use heaptide_analyzer::config::{table, ServeConfig, Setting, Settings};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
}

/// What every way in starts from: a ClickHouse store, so that a shard
/// other than 0/1 is allowed, and an ingest token, so that a read token
/// is.
fn base() -> Settings {
    toml::from_str("store = \"clickhouse://127.0.0.1:9/base\"\ntoken_file = \"base-token\"")
        .unwrap()
}

/// The base, with the partner of a setting that only comes in a pair.
fn base_for(key: &str) -> Settings {
    let partner = match key {
        "tls_cert" => "tls_key = \"server.key\"",
        "tls_key" => "tls_cert = \"server.pem\"",
        _ => return base(),
    };
    toml::from_str::<Settings>(partner).unwrap().over(base())
}

fn resolve(flags: Settings, file: Settings) -> String {
    match ServeConfig::resolve(flags, |_| None, Some(file)) {
        Ok(c) => format!("{c:?}"),
        Err(e) => format!("error: {e}"),
    }
}

/// The example as a TOML value: as written when it is a number, else a
/// string, else a list of one string.
fn file_layer(s: &Setting) -> Settings {
    let raw = format!("{} = {}", s.key, s.example);
    let quoted = format!("{} = {:?}", s.key, s.example);
    let list = format!("{} = [{:?}]", s.key, s.example);
    [raw, quoted, list]
        .iter()
        .find_map(|t| toml::from_str::<Settings>(t).ok())
        .unwrap_or_else(|| panic!("{}: no TOML form of {:?} is read", s.key, s.example))
}

#[test]
fn every_setting_reaches_the_config_by_flag_variable_and_file() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    for (file, token) in [
        ("base-token", "base-token-0123456789"),
        ("token", "example-token-0123456789"),
        ("read-token", "read-token-0123456789"),
        ("admin-token", "admin-token-0123456789"),
        (
            "tokens.toml",
            "[[token]]\nname = \"a\"\nkind = \"read\"\nsecret = \"file-token-0123456789\"\n",
        ),
        ("session-key", "session-key-0123456789-0123456789"),
    ] {
        std::fs::write(file, token).unwrap();
    }
    heaptide_testkit::certs::Certs::make(dir.path());
    let unset = resolve(Settings::default(), base());
    assert!(!unset.starts_with("error"), "{unset}");
    for s in table() {
        let flag = Cli::try_parse_from(["serve", s.flag.as_str(), s.example])
            .unwrap_or_else(|e| panic!("{}: {e}", s.flag))
            .settings;
        // Set for the process: no other test of this file reads the
        // environment or the working directory.
        std::env::set_var(s.env, s.example);
        let env = Cli::try_parse_from(["serve"]).map(|c| c.settings);
        std::env::remove_var(s.env);
        let env = env.unwrap_or_else(|e| panic!("{}: {e}", s.env));
        let by_flag = resolve(flag, base_for(s.key));
        let by_env = resolve(env, base_for(s.key));
        let by_file = resolve(Settings::default(), file_layer(&s).over(base_for(s.key)));
        assert!(!by_flag.starts_with("error"), "{}: {by_flag}", s.flag);
        assert_eq!(by_flag, by_env, "{} and {} differ", s.flag, s.env);
        assert_eq!(by_flag, by_file, "{} and the key {} differ", s.flag, s.key);
        assert_ne!(by_flag, unset, "{} = {} changed nothing", s.key, s.example);
    }
}

/// The table of `docs/cli.md`, as the declaration makes it.
fn docs_table() -> String {
    let mut out =
        String::from("| file key | flag | variable | default | meaning |\n|---|---|---|---|---|\n");
    for s in table() {
        let default = s.default.map_or("none".into(), |d| format!("`{d}`"));
        out.push_str(&format!(
            "| `{}` | `{}` | `{}` | {default} | {} |\n",
            s.key,
            s.flag,
            s.env,
            s.help.replace('|', "\\|")
        ));
    }
    out
}

#[test]
fn the_docs_show_every_setting_as_declared() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    heaptide_testkit::golden::assert_doc_section(
        &root.join("docs/cli.md"),
        "analyzer serve settings",
        &docs_table(),
    );
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for s in table() {
        assert!(readme.contains(s.env), "README.md does not name {}", s.env);
    }
}

#[test]
fn read_commands_take_the_store_as_serve_declares_it() {
    let store = table().into_iter().find(|s| s.key == "store").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_analyzer"))
        .args(["leaks", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(help.contains(&store.help), "{help}");
    assert!(help.contains(store.env), "{help}");
}
