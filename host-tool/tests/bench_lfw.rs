//! `host-tool bench lfw` through the real program on a small LFW slice (40
//! people × 4 photos, a two-fold pairs.txt of its own): the distances file
//! and the pair-by-pair comparison of two runs (`--compare-with`), including
//! refusing a file that does not hold the same pairs.
//! Needs LFW in ../shared (or $FACEGATE_LFW_DIR); skips loudly without it.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn host_tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host-tool")).arg("--models").arg(facegate_testkit::models()).args(args).output().unwrap()
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn compare_with_counts_the_pairs_only_one_run_gets_right() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    let Some(people) = facegate_testkit::lfw_people_with_four_photos(&photos, 40, "bench lfw --compare-with") else { return };
    let pairs = dir.path().join("pairs.txt");
    std::fs::write(&pairs, facegate_testkit::two_fold_pairs(&people)).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (hog_csv, yunet_csv) = (dir.path().join("hog.csv"), dir.path().join("yunet.csv"));
    let run = |detector: &str, extra: &[&str]| {
        let mut args =
            vec!["bench", "lfw", "--lfw", &s(&photos), "--pairs", &s(&pairs), "--json", "--no-mirror", "--jitter", "0"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>();
        args.extend(["--detector", detector, "--min-face", "60"].map(String::from));
        args.extend(extra.iter().map(|a| a.to_string()));
        host_tool(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let hog = json_of(&run("hog", &["--distances-csv", &s(&hog_csv)]));
    assert_eq!(hog["pairs"], 40);
    assert!(hog["paired_comparison"].is_null(), "no comparison without --compare-with");
    let csv = std::fs::read_to_string(&hog_csv).unwrap();
    assert_eq!(csv.lines().count(), 41, "a header and one line per pair");

    // Another detector against the HOG run: the counts must add up with each
    // run's own fold accuracies, and the p-value is a probability.
    let yunet = json_of(&run("yunet", &["--compare-with", &s(&hog_csv), "--distances-csv", &s(&yunet_csv)]));
    let c = &yunet["paired_comparison"];
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("paired_comparison.{k} missing: {c}"));
    let right_from_accuracy = |v: &Value| {
        v["fold_accuracy"].as_array().unwrap().iter().map(|a| a.as_f64().unwrap() / 100.0 * 20.0).sum::<f64>().round() as u64
    };
    assert_eq!(n("right_baseline"), right_from_accuracy(&hog), "{c}");
    assert_eq!(n("right"), right_from_accuracy(&yunet), "{c}");
    assert_eq!(n("right_baseline") - n("only_baseline_right"), n("right") - n("only_this_right"), "both right: {c}");
    let p = c["p_value"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p), "{c}");

    // The same run again is the same, pair for pair (the pipeline is deterministic).
    let again = json_of(&run("yunet", &["--compare-with", &s(&yunet_csv)]));
    let c = &again["paired_comparison"];
    assert_eq!(
        (c["only_baseline_right"].as_u64(), c["only_this_right"].as_u64(), c["p_value"].as_f64()),
        (Some(0), Some(0), Some(1.0))
    );

    // A file without every pair, or not a distances file, is refused and named.
    let short = dir.path().join("short.csv");
    std::fs::write(&short, csv.lines().take(30).collect::<Vec<_>>().join("\n")).unwrap();
    let refused = run("hog", &["--compare-with", &s(&short)]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("has no distance for"), "{refused:?}");
    let garbage = dir.path().join("garbage.csv");
    std::fs::write(&garbage, "fold,same,distance,a,b\n0,maybe,0.4,x,y\n").unwrap();
    let refused = run("hog", &["--compare-with", &s(&garbage)]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("line 2"), "{refused:?}");
    // Another CSV (here the pairs.txt itself) is refused at its first line.
    let refused = run("hog", &["--compare-with", &s(&pairs)]);
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("is not a --distances-csv file"),
        "{refused:?}"
    );
}
