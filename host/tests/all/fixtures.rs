//! Golden fixtures: every bundled plugin's own, and `tollgate plugin test`
//! failing on a wrong expectation and passing after `--bless`.

use crate::plugins_dir;
use std::path::{Path, PathBuf};
use std::process::Command;
use tollgate::plugins::fixtures::{self, Outcome};
use tollgate::plugins::{Kind, Limits, Runtime};

#[derive(serde::Deserialize)]
struct Bundled {
    name: String,
    version: String,
    kind: Kind,
    file: String,
}

#[test]
fn every_bundled_plugin_passes_its_fixtures_under_production_limits() {
    let runtime = Runtime::new(Limits::default(), None).unwrap();
    let listed: Vec<Bundled> =
        serde_json::from_slice(&std::fs::read(plugins_dir().join("plugins.json")).unwrap()).unwrap();
    let mut by_kind = std::collections::BTreeMap::new();
    for b in &listed {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins").join(&b.name).join("fixtures");
        assert!(dir.is_dir(), "bundled plugin {} has no fixtures in {}", b.name, dir.display());
        let bytes = std::fs::read(plugins_dir().join(&b.file)).unwrap();
        let plugin = runtime.load(&b.name, semver::Version::parse(&b.version).unwrap(), b.kind, &bytes).unwrap();
        for r in fixtures::run(&runtime, &plugin, &dir, false).unwrap() {
            assert_eq!(r.outcome, Outcome::Passed, "{}: fixture {}", b.name, r.name);
            assert!(r.fuel_used > 0 && r.fuel_used < r.fuel_budget);
        }
        *by_kind.entry(format!("{:?}", b.kind)).or_insert(0) += 1;
    }
    assert!(by_kind.len() == 2, "raters and mappers: {by_kind:?}");
}

/// `tollgate plugin test <wasm> <dir> [extra]`: whether it passed, and its output.
fn plugin_test(wasm: &Path, dir: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["plugin", "test"])
        .arg(wasm)
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A fresh temporary fixtures directory (`tag` tells the tests apart)
/// holding copies of these fixture files of the bundled graduated tiers.
fn graduated_fixtures(tag: &str, files: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-fixtures-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/graduated-tiers/fixtures");
    for f in files {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    dir
}

#[test]
fn plugin_test_fails_on_a_wrong_fixture_and_passes_after_bless() {
    let dir = graduated_fixtures(
        "bless",
        &["three-tiers.input.json", "three-tiers.expected.json", "no-usage.input.json", "no-usage.expected.json"],
    );
    // A wrong expectation: 11.25 becomes 11.26.
    let expected = dir.join("three-tiers.expected.json");
    let text = std::fs::read_to_string(&expected).unwrap();
    assert!(text.contains("\"11.25\""));
    std::fs::write(&expected, text.replace("\"11.25\"", "\"11.26\"")).unwrap();

    let wasm = plugins_dir().join("graduated-tiers-0.1.0.wasm");
    let run = |extra: &[&str]| plugin_test(&wasm, &dir, extra);
    let (ok, out) = run(&[]);
    assert!(!ok, "{out}");
    assert!(out.contains("three-tiers") && out.contains("FAILED"), "{out}");
    assert!(out.contains("charges[2].amount: expected 11.26, got 11.25"), "{out}");
    assert!(out.contains("1 passed, 1 failed"), "{out}");
    assert!(out.contains("/ 50000000"), "fuel is reported against the production budget: {out}");

    let (ok, out) = run(&["--bless"]);
    assert!(ok, "{out}");
    assert!(out.contains("blessed"));
    let (ok, out) = run(&[]);
    assert!(ok, "{out}");
    assert!(out.contains("2 passed, 0 failed"), "{out}");
    assert!(std::fs::read_to_string(&expected).unwrap().contains("\"11.25\""));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plugin_test_fails_a_rater_whose_answers_in_a_batch_differ_from_its_answers_alone() {
    let dir = graduated_fixtures("batch", &["three-tiers.input.json", "no-usage.input.json"]);
    // Numbers the inputs it rates: alone always "input number 1".
    let wasm = crate::built("test-components", "TOLLGATE_TEST_COMPONENTS_DIR").join("hostile-rater-stateful.wasm");
    let run = |extra: &[&str]| plugin_test(&wasm, &dir, extra);
    // Blessing writes what each case answers alone, but cannot make the
    // batch answers agree.
    for extra in [&["--bless"][..], &[]] {
        let (ok, out) = run(extra);
        assert!(!ok, "{out}");
        assert!(out.contains("answer must depend on its own input only"), "{out}");
        let differs = r#"charges[0].description: expected "input number 1 of this instance", got "input number 2 of this instance""#;
        assert!(out.contains(differs), "{out}");
        // Forwards the second case differs, backwards the first.
        assert!(out.contains("0 passed, 2 failed"), "{out}");
    }
    assert!(std::fs::read_to_string(dir.join("no-usage.expected.json")).unwrap().contains("input number 1"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plugin_test_says_when_a_plugin_implements_a_deprecated_interface() {
    let dir = graduated_fixtures("deprecated", &["three-tiers.input.json"]);
    let components = crate::built("test-components", "TOLLGATE_TEST_COMPONENTS_DIR");
    let (ok, out) = plugin_test(&components.join("legacy-rater-v0-1.wasm"), &dir, &["--bless"]);
    assert!(ok, "a deprecated plugin still runs: {out}");
    assert!(out.contains("implements tollgate:plugin/rater@0.1.0, which is deprecated"), "{out}");
    let (ok, out) = plugin_test(&components.join("legacy-rater-v0-2.wasm"), &dir, &["--bless"]);
    assert!(ok && !out.contains("deprecated"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
