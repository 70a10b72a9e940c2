//! The deployment artefacts in `deploy/`, checked with their own ecosystem's tools.

use std::path::Path;
use std::process::Command;

/// Each unit with the highest `systemd-analyze security` exposure it may have.
const UNITS: [(&str, f32); 3] = [
    ("ocrd-serve.service", 2.0),
    ("ocrd-migrate.service", 2.0),
    ("ocrd-work@.service", 3.0),
];

fn systemd_analyze(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("systemd-analyze is not installed (Debian package `systemd`; scripts/test-services.sh installs it)")
}

#[test]
fn systemd_units_verify_clean_and_stay_within_their_exposure() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = crate::ocr::repo().join("deploy/systemd");
    let mut names = Vec::new();
    for (unit, _) in UNITS {
        let text = std::fs::read_to_string(shipped.join(unit)).unwrap();
        assert!(
            text.contains("ExecStart=/usr/local/bin/ocrd "),
            "{unit}: ExecStart moved"
        );
        // verify checks that ExecStart is executable: point it at the binary under test.
        let text = text.replace("/usr/local/bin/ocrd", crate::install::ocrd_bin());
        // A template is verified as an instance of it.
        let name = unit.replace("@.", "@0.");
        std::fs::write(dir.path().join(&name), text).unwrap();
        names.push(format!("./{name}"));
    }
    let mut args = vec!["verify", "--man=no"];
    args.extend(names.iter().map(String::as_str));
    let out = systemd_analyze(&args, dir.path());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );

    for ((unit, most), name) in UNITS.iter().zip(&names) {
        let out = systemd_analyze(&["security", "--offline=yes", name], dir.path());
        let text = String::from_utf8_lossy(&out.stdout);
        let exposure: f32 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: no exposure in\n{text}"));
        eprintln!(
            "systemd-analyze security --offline=yes {unit}: exposure {exposure:.1} (at most {most:.1})"
        );
        assert!(
            exposure <= *most,
            "{unit}: exposure {exposure} over {most}\n{text}"
        );
    }
}
