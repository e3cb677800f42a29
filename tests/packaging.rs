//! The packaging files, checked cheaply (scripts/package-check.sh installs
//! and starts each for real, but takes minutes and needs root): the
//! configurations the .deb and the container image install pass `weft
//! check-config`; the systemd unit passes `systemd-analyze verify` with no
//! warning (it exits 0 on unknown keys and bad values, so its output must be
//! empty); Cargo.toml's [package.metadata.deb] names files that exist and
//! the paths the unit reads. Without systemd-analyze the unit test skips
//! visibly (WEFT_SKIP_REPORT); with WEFT_SYSTEMD_REQUIRED=1 (scripts/test.sh
//! sets it in CI) it fails instead.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check_config(file: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("check-config")
        .arg(file)
        .output()
        .expect("run weft check-config");
    assert!(
        out.status.success(),
        "weft check-config {}: {:?}\n{}",
        file.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn deb_default_config_passes_check_config() {
    check_config(&repo().join("scripts/package/weft.toml"));
}

#[test]
fn container_config_passes_check_config() {
    check_config(&repo().join("scripts/package/weft-container.toml"));
}

fn unit_text() -> String {
    std::fs::read_to_string(repo().join("scripts/package/weft.service")).expect("read weft.service")
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let required = common::env_flag("WEFT_SYSTEMD_REQUIRED")
        .then_some("WEFT_SYSTEMD_REQUIRED is set: this machine must run it");
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        common::report_skip(
            "packaging::unit_passes_systemd_analyze_verify: no systemd-analyze (Debian: systemd)",
            required,
        );
        return;
    }
    // verify checks that every Exec*= binary exists: the unit as installed,
    // with the binary this test run built in /usr/bin/weft's place.
    let dir = std::env::temp_dir().join(format!("weft-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit = dir.join("weft.service");
    std::fs::write(
        &unit,
        unit_text().replace("/usr/bin/weft", env!("CARGO_BIN_EXE_weft")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("run systemd-analyze verify");
    let _ = std::fs::remove_dir_all(&dir);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify weft.service: {:?}\n{said}",
        out.status
    );
}

/// The directives issue 18 asks of the unit, and the paths it shares with
/// the package: a change to one side that forgets the other fails here.
#[test]
fn unit_and_deb_metadata_agree() {
    let unit = unit_text();
    for line in [
        "LimitMEMLOCK=infinity",
        "Restart=on-failure",
        "User=weft",
        "ExecStartPre=/usr/bin/weft check-config /etc/weft/weft.toml",
        "ExecStart=/usr/bin/weft run --config /etc/weft/weft.toml",
        "StateDirectory=weft",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "weft.service lacks '{line}'"
        );
    }
    assert!(unit.lines().any(|l| l.starts_with("CPUAffinity=")));

    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo().join("Cargo.toml")).unwrap()).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets = deb["assets"].as_array().expect("deb assets");
    let mut destinations = Vec::new();
    for asset in assets {
        let asset = asset
            .as_array()
            .expect("an asset is [source, destination, mode]");
        let source = asset[0].as_str().unwrap();
        let destination = asset[1].as_str().unwrap();
        if !source.starts_with("target/") {
            assert!(
                repo().join(source).is_file(),
                "deb asset {source} is missing"
            );
        }
        destinations.push(if destination.ends_with('/') {
            format!(
                "/{destination}{}",
                Path::new(source).file_name().unwrap().to_string_lossy()
            )
        } else {
            format!("/{destination}")
        });
    }
    assert!(
        destinations.contains(&"/usr/bin/weft".to_string()),
        "{destinations:?}"
    );
    let conf_files: Vec<&str> = deb["conf-files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(conf_files, ["/etc/weft/weft.toml"]);
    assert!(destinations.iter().any(|d| d == "/etc/weft/weft.toml"));

    let units = deb["systemd-units"]["unit-scripts"].as_str().unwrap();
    assert!(repo().join(units).join("weft.service").is_file());
    let scripts = repo().join(deb["maintainer-scripts"].as_str().unwrap());
    for script in ["postinst", "postrm"] {
        let path = scripts.join(script);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert!(text.contains("#DEBHELPER#"), "{script} lacks #DEBHELPER#");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{script} is not executable");
    }
}
